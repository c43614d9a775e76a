# The devices of the lab's qemu-system-ppc64 (lab/build-qemu configures with
# --without-default-devices and this list): the pseries machine and what the
# lab puts on it, instead of every 32- and 64-bit PowerPC board.
CONFIG_PSERIES=y
# spapr-nvdimm is always built with pseries, and its parent type with NVDIMM.
CONFIG_NVDIMM=y
# virtio-serial: the lab guest's control channel and the benchmark's yardstick.
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_SERIAL=y
# Without -nodefaults a pseries machine gets a VGA and, with it, a USB
# controller: command lines that work with Debian's QEMU keep working.
CONFIG_VGA_PCI=y
CONFIG_USB_XHCI_NEC=y
# ... and, with the VGA, a USB keyboard and mouse.
CONFIG_USB_HID=y
