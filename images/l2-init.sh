#!/bin/sh
# mflab L2 init (busybox): report every PCI function L2's kernel
# enumerated, one line each, on the serial console; then power off.
# Shell builtins only in the loop: under nested KVM on TCG every fork and
# exec costs tens of milliseconds.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
read -r up _ < /proc/uptime
echo "MFLAB-L2-START $up"
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
  echo "MFLAB-L2-PCI ${d##*/} $vendor $device $class $drv"
done
read -r up _ < /proc/uptime
echo "MFLAB-L2-DONE $up"
poweroff -f
