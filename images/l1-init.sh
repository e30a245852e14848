#!/bin/sh
# mflab L1 init (busybox). Mounts the kernel's own filesystems, loads the
# modules the lab needs, shares in the host's root (or a release's root)
# read-only over 9p, and runs /mflab/agent.sh (written by the runner)
# inside a chroot of it.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "mflab-l1: init at $(cut -d' ' -f1 /proc/uptime)s"
# KVM's vendor module for this CPU: kvm_intel needs vmx, kvm_amd svm (TCG
# emulates only SVM; an Intel host's KVM gives vmx). Read with builtins:
# every process costs milliseconds under emulation.
kvm_vendor=none
while read -r key rest; do
  case "$key" in flags)
    case " $rest " in *" vmx "*) kvm_vendor=kvm_intel ;; *" svm "*) kvm_vendor=kvm_amd ;; esac
    break ;;
  esac
done < /proc/cpuinfo
# One line per group of modules that share nothing: the groups load side
# by side, each in order.
load_groups() {
  while read -r group; do
    (for m in $group; do
      case "$m" in kvm_intel|kvm_amd) [ "$m" = "$kvm_vendor" ] || continue ;; esac
      insmod "/lib/modules/$m.ko" 2>/dev/null || echo "mflab-l1: insmod $m failed"
    done) &
  done < "$1"
  wait
}
load_groups /etc/mflab/modules
echo "mflab-l1: modules loaded at $(cut -d' ' -f1 /proc/uptime)s"
# An IOMMU without interrupt remapping (virtio-iommu): VFIO's type1 takes
# its groups only with this set (the runner says when, cmdline.rs why).
if [ "$mflab_allow_unsafe_interrupts" = 1 ]; then
  echo 1 > /sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts || echo "mflab-l1: cannot allow unsafe interrupts"
fi

mkdir -p /newroot
mount -t tmpfs -o mode=0755 tmpfs /newroot
mkdir -p /newroot/run
mount -t tmpfs tmpfs /newroot/run
mkdir -p /newroot/run/mflab
# Modules only an L2 needs load behind the agent (l1-late-modules.txt says
# why); whatever starts an L2 waits for this file.
(load_groups /etc/mflab/modules-late > /newroot/run/mflab/late-modules.log 2>&1
 echo "mflab-l1: late modules loaded at $(cut -d' ' -f1 /proc/uptime)s"
 mv /newroot/run/mflab/late-modules.log /newroot/run/mflab/late-modules) &

mkdir -p /host
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose host /host || { echo "mflab-l1: cannot mount the host root"; poweroff -f; }
# A skeleton root: the host's directories bound in, the kernel's own
# proc/sys/dev and fresh tmpfs where writes happen. Every process costs
# milliseconds under emulation, so the list is built with shell builtins
# and carried out by three commands (a mount and a mkdir per directory
# took 0.25 s).
fstab=/etc/mflab/fstab
# libvirt 10+ reads /lib/modules/$(uname -r)/modules.alias before a managed
# detach (to pick a VFIO variant driver) and fails the start without it. A
# release's root has its kernel's; the host's root has the host kernel's,
# not L1's. Then L1's /lib is a directory of links into /usr/lib (made
# after the mounts), with a modules/<version>/modules.alias of L1's kernel
# from the initramfs (the VFIO variant drivers' aliases).
read -r kver < /proc/sys/kernel/osrelease
own_lib=0
if [ -L /host/lib ] && [ ! -e "/host/lib/modules/$kver/modules.alias" ] && [ -e /lib/modules/modules.alias ]; then
  own_lib=1
fi
links=""
dirs="/newroot/proc /newroot/sys /newroot/dev /newroot/tmp /newroot/mflab /newroot/l2"
for d in /host/*; do
  n=${d#/host/}
  case "$n" in
    proc|sys|dev|run|tmp|mflab|l2|*[[:space:]]*) ;;
    lib) if [ $own_lib = 1 ]; then :; elif [ -L "$d" ]; then links="$links $d"
         else dirs="$dirs /newroot/lib"; echo "$d /newroot/lib none bind 0 0" >> $fstab; fi ;;
    *) if [ -L "$d" ]; then links="$links $d"
       elif [ -d "$d" ]; then
         dirs="$dirs /newroot/$n"
         echo "$d /newroot/$n none bind 0 0" >> $fstab
       fi ;;
  esac
done
echo "proc /newroot/proc proc defaults 0 0
sys /newroot/sys sysfs defaults 0 0
dev /newroot/dev devtmpfs defaults 0 0
tmpfs /newroot/tmp tmpfs defaults 0 0
work /newroot/mflab 9p trans=virtio,version=9p2000.L,msize=512000 0 0" >> $fstab
# Where L2's RAM comes from (l2_ram.rs says why); the agent sets the huge
# pages aside when the first L2 needs them (doing it here cost 0.7 s of
# every boot, plan-depth ones included). devtmpfs is one instance however
# often it is mounted: the directory made here is the chroot's too.
mkdir -p /dev/hugepages
echo "hugetlbfs /newroot/dev/hugepages hugetlbfs defaults 0 0" >> $fstab
[ -n "$links" ] && cp -d $links /newroot/
mkdir $dirs
mount -a -T $fstab || echo "mflab-l1: some mounts failed (above)"
if [ $own_lib = 1 ]; then
  mkdir /newroot/lib
  (cd /newroot/lib && ln -s ../usr/lib/* . && rm -f modules && mkdir -p "modules/$kver" && cp /lib/modules/modules.alias "modules/$kver/") || echo "mflab-l1: no modules.alias for $kver (libvirt 10+ needs it)"
fi
# L2's kernel and initramfs: the runner's files (paths from the kernel's
# command line: under /host, or in the work directory when the root is a
# release's), read over 9p by the first L2 and from L1's page cache after.
: > /newroot/l2/vmlinux
: > /newroot/l2/initrd
mount --bind "$mflab_l2_kernel" /newroot/l2/vmlinux || echo "mflab-l1: no L2 kernel at $mflab_l2_kernel"
mount --bind "$mflab_l2_initrd" /newroot/l2/initrd || echo "mflab-l1: no L2 initramfs at $mflab_l2_initrd"
echo "mflab-l1: agent starting at $(cut -d' ' -f1 /proc/uptime)s"
chroot /newroot /bin/sh /mflab/agent.sh
echo "mflab-l1: agent exited $? at $(cut -d' ' -f1 /proc/uptime)s"
sync
poweroff -f
