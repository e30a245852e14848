#!/bin/sh
# mflab L2 init (busybox): report every PCI function L2's kernel
# enumerated, one line each, on the serial console; then power off.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
echo "MFLAB-L2-START $(cut -d' ' -f1 /proc/uptime)"
for d in /sys/bus/pci/devices/*; do
  [ -e "$d/vendor" ] || continue
  drv=-
  [ -L "$d/driver" ] && drv=$(basename "$(readlink "$d/driver")")
  echo "MFLAB-L2-PCI ${d##*/} $(cat "$d/vendor") $(cat "$d/device") $(cat "$d/class") $drv"
done
echo "MFLAB-L2-DONE $(cut -d' ' -f1 /proc/uptime)"
poweroff -f
