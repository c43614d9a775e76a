# kunit.py --qemu_config for a little-endian POWER9 pseries guest: the radix
# MMU, so KASAN can watch the suite.  Loaded by kunit.py as if it lived in its
# qemu_configs directory, hence the relative import.
from ..qemu_config import QemuArchParams

QEMU_ARCH = QemuArchParams(linux_arch='powerpc',
			   kconfig='''
CONFIG_PPC64=y
CONFIG_CPU_LITTLE_ENDIAN=y
CONFIG_PPC_RADIX_MMU=y
CONFIG_HVC_CONSOLE=y
CONFIG_KASAN=y
CONFIG_PROVE_LOCKING=y
CONFIG_DEBUG_ATOMIC_SLEEP=y''',
			   qemu_arch='ppc64',
			   kernel_path='vmlinux',
			   kernel_command_line='console=hvc0',
			   # QEMU's Virtual Open Firmware boots much faster than
			   # SLOF; -prom-env has QEMU format the NVRAM SLOF would.
			   extra_qemu_params=['-M', 'pseries,x-vof=on,'
					      'cap-cfpc=broken,cap-sbbc=broken,'
					      'cap-ibs=broken,cap-ccf-assist=off',
					      '-prom-env', 'kunit=papr-hvpipe',
					      '-cpu', 'power9', '-m', '1G'])
