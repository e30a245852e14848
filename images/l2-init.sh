#!/bin/sh
# mflab L2 init (busybox): report every PCI function L2's kernel
# enumerated, one line each, on L2's report port (a virtio-serial port
# named mflab.report; the console where L2 has none); then power off.
# With `mflab.steps` on the kernel command line it stays up after the
# report and reads commands from the second serial port (ttyS1):
# "rescan N" rescans the PCI bus and reports again on that port, tagged
# N, with the number of lines it printed (not on the console, where the
# kernel's own messages cut into init's lines); "done" powers off.
# Shell builtins only in the loops: under nested KVM on TCG every fork and
# exec costs tens of milliseconds.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
report() {
  count=0
  lines=
  for d in /sys/bus/pci/devices/*; do
    [ -e "$d/vendor" ] || continue
    read -r vendor < "$d/vendor"
    read -r device < "$d/device"
    read -r class < "$d/class"
    drv=-
    if [ -L "$d/driver" ]; then
      drv=$(cd -P "$d/driver" && pwd)
      drv=${drv##*/}
    fi
    # Its length at the end: a line the console cut a byte out of
    # ("1234:111" for "1234:1111") is told from a whole one.
    line="$1 ${d##*/} $vendor $device $class $drv"
    lines="$lines$line #${#line}
"
    count=$((count + 1))
  done
  # Twice: the console loses a byte in about one report in three under
  # nested emulation; a line is lost only when both of its copies are.
  printf '%s%s' "$lines" "$lines"
}
read -r up _ < /proc/uptime
# On the console: init started (the runner's first sign of life from L2).
echo "MFLAB-L2-START $up"
# The report port's modules, in order, one group a line.
while read -r group; do
  for m in $group; do insmod "/lib/modules/$m.ko" 2>/dev/null; done
done < /etc/mflab/modules
# Its port appears once the host's control message is handled: wait for
# it up to about 2 s, then fall back to the console.
port=
tries=0
while [ -z "$port" ] && [ "$tries" -lt 40 ]; do
  for p in /sys/class/virtio-ports/*; do
    [ -e "$p/name" ] || continue
    read -r name < "$p/name"
    [ "$name" = mflab.report ] && [ -e "/dev/${p##*/}" ] && port="/dev/${p##*/}"
  done
  [ -n "$port" ] && break
  tries=$((tries + 1))
  sleep 0.05
done
[ -n "$port" ] && exec > "$port"
echo "MFLAB-L2-START $up"
report "MFLAB-L2-PCI"
read -r cmdline < /proc/cmdline
# The link proof (lab::protocol::link): with mflab.ping=PEER,SELF,COUNT,
# load the NIC drivers, bring up the one interface the assigned function
# gave L2, ping L1's peer and report what came back.
ping_words=
for word in $cmdline; do
  case "$word" in mflab.ping=*) ping_words=${word#mflab.ping=};; esac
done
if [ -n "$ping_words" ]; then
  IFS=, read -r peer self pings <<WORDS
$ping_words
WORDS
  while read -r group; do
    for m in $group; do insmod "/lib/modules/$m.ko" 2>/dev/null; done
  done < /etc/mflab/modules-late
  iface=
  tries=0
  while [ -z "$iface" ] && [ "$tries" -lt 40 ]; do
    for n in /sys/class/net/*; do
      [ "${n##*/}" = lo ] || [ ! -e "$n/device" ] || iface=${n##*/}
    done
    [ -n "$iface" ] && break
    tries=$((tries + 1))
    sleep 0.05
  done
  if [ -z "$iface" ]; then
    echo "MFLAB-L2-LINK - - 0 0"
  else
    drv=$(cd -P "/sys/class/net/$iface/device/driver" && pwd)
    ip link set "$iface" up
    ip addr add "$self" dev "$iface"
    sent=0
    got=0
    # busybox ping's summary: "5 packets transmitted, 5 packets received, 0% packet loss"
    ping -c "$pings" -W 3 "$peer" > /ping.out 2>&1
    while read -r a b c d rest; do
      [ "$b $c" = "packets transmitted," ] && sent=$a && got=$d
    done < /ping.out
    echo "MFLAB-L2-LINK $iface ${drv##*/} $sent $got"
  fi
fi
read -r up _ < /proc/uptime
# Twice, like the lines: a cut end line ("MFAB-L2-DONE") retried a run.
echo "MFLAB-L2-DONE $up $count"
echo "MFLAB-L2-DONE $up $count"
case " $cmdline " in
*" mflab.steps "*)
  # A reboot step (mflab.acpi): answer the ACPI power button as a guest
  # OS does, by powering off; QEMU holds the machine and resets it.
  case " $cmdline " in
  *" mflab.acpi "*)
    insmod /lib/modules/button.ko 2>/dev/null
    insmod /lib/modules/evdev.ko 2>/dev/null
    mkdir -p /etc/acpi/PWRF
    printf '#!/bin/sh\npoweroff -f\n' > /etc/acpi/PWRF/00000080
    chmod 755 /etc/acpi/PWRF/00000080
    # In the foreground: daemonized, busybox's acpid heard the button
    # and ran nothing. Its log (the event it acted on) goes to the console.
    acpid -d > /dev/console 2>&1 &;;
  esac
  # Opening the port clears its FIFO: what came before is lost, so the
  # agent writes nothing until READY.
  exec 3<> /dev/ttyS1
  stty -echo <&3 2>/dev/null
  echo "MFLAB-L2-READY"
  echo "MFLAB-L2-READY"
  while read -r word n <&3; do
    case "$word" in
    rescan)
      echo 1 > /sys/bus/pci/rescan
      report "MFLAB-L2-STEP-PCI $n" >&3
      read -r up _ < /proc/uptime
      echo "MFLAB-L2-STEP-DONE $n $up $count" >&3;;
    done) break;;
    esac
  done;;
esac
poweroff -f
