#!/bin/sh
# mflab L1 init (busybox). Mounts the kernel's own filesystems, loads the
# modules the lab needs, shares in the host's root read-only over 9p, and
# runs /mflab/agent.sh (written by the runner) inside a chroot of it.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "mflab-l1: init at $(cut -d' ' -f1 /proc/uptime)s"
# One line per group of modules that share nothing: the groups load side
# by side, each in order.
while read -r group; do
  (for m in $group; do
    insmod "/lib/modules/$m.ko" 2>/dev/null || echo "mflab-l1: insmod $m failed"
  done) &
done < /etc/mflab/modules
wait
echo "mflab-l1: modules loaded at $(cut -d' ' -f1 /proc/uptime)s"

mkdir -p /host /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose host /host || { echo "mflab-l1: cannot mount the host root"; poweroff -f; }
mount -t tmpfs -o mode=0755 tmpfs /newroot
# A skeleton root: the host's directories bound in, the kernel's own
# proc/sys/dev and fresh tmpfs where writes happen.
for d in /host/*; do
  n=${d#/host/}
  case "$n" in
    proc|sys|dev|run|tmp|mflab|l2) ;;
    *) if [ -L "$d" ]; then ln -s "$(readlink "$d")" "/newroot/$n"
       elif [ -d "$d" ]; then mkdir "/newroot/$n" && mount --bind "$d" "/newroot/$n"; fi ;;
  esac
done
mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/tmp /newroot/run /newroot/mflab /newroot/l2
# L2's kernel and initramfs came in this initramfs: L1's RAM, not 9p.
mount --bind /l2 /newroot/l2
mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t devtmpfs dev /newroot/dev
# Where L2's RAM comes from (l2_ram.rs says why). The agent sets the huge
# pages aside when the first L2 needs them: doing it here cost 0.7 s of
# every boot, plan-depth ones included.
mkdir -p /newroot/dev/hugepages
mount -t hugetlbfs hugetlbfs /newroot/dev/hugepages || echo "mflab-l1: no hugetlbfs"
mount -t tmpfs tmpfs /newroot/tmp
mount -t tmpfs tmpfs /newroot/run
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 work /newroot/mflab || echo "mflab-l1: no work share"
echo "mflab-l1: agent starting at $(cut -d' ' -f1 /proc/uptime)s"
chroot /newroot /bin/sh /mflab/agent.sh
echo "mflab-l1: agent exited $? at $(cut -d' ' -f1 /proc/uptime)s"
sync
poweroff -f
