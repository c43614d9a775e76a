# kunit.py --qemu_config for a little-endian POWER9 pseries guest: the radix
# MMU, so KASAN can watch the suite where the build has it.  Loaded by
# kunit.py as if it lived in its qemu_configs directory, hence the relative
# import.
from ..qemu_config import QemuArchParams

QEMU_ARCH = QemuArchParams(linux_arch='powerpc',
			   kconfig='''
CONFIG_PPC64=y
CONFIG_CPU_LITTLE_ENDIAN=y
CONFIG_PPC_RADIX_MMU=y
CONFIG_HVC_CONSOLE=y
CONFIG_DEBUG_ATOMIC_SLEEP=y''',
			   qemu_arch='ppc64',
			   kernel_path='vmlinux',
			   # The guest build has KUnit without autorun (the lab
			   # guest never runs the suite); from 7.3 on, kunit.py's
			   # boot asks for it (6.12 ignores the parameter).
			   kernel_command_line='console=hvc0 kunit.autorun=1',
			   # QEMU's Virtual Open Firmware boots much faster than
			   # SLOF; -prom-env has QEMU format the NVRAM SLOF would.
			   extra_qemu_params=['-M', 'pseries,x-vof=on,'
					      'cap-cfpc=broken,cap-sbbc=broken,'
					      'cap-ibs=broken,cap-ccf-assist=off',
					      '-prom-env', 'kunit=papr-hvpipe',
					      '-cpu', 'power9', '-m', '1G'])
