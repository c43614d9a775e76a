/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
#ifndef _UAPI_PAPR_HVPIPE_H_
#define _UAPI_PAPR_HVPIPE_H_

#include <linux/types.h>
#include <asm/ioctl.h>
#include <asm/papr-miscdev.h>

/*
 * User ABI of /dev/papr-hvpipe, the PowerVM hypervisor pipe between the
 * partition and its sources (Hardware Management Consoles).
 */

/**
 * struct papr_hvpipe_hdr - Header of every read() and write() on a source fd.
 * @version:   0 in what read() returns; ignored on write().
 * @reserved:  0 in what read() returns; ignored on write().
 * @flags:     In what read() returns: %HVPIPE_MSG_AVAILABLE or
 *             %HVPIPE_LOST_CONNECTION. Ignored on write().
 * @reserved2: 0 in what read() returns; ignored on write().
 *
 * write() takes this header followed by the payload, 1 to 4048 bytes
 * (4096 bytes at most in all).
 * read() returns this header, followed by the payload when @flags has
 * %HVPIPE_MSG_AVAILABLE. The header is in host byte order.
 */
struct papr_hvpipe_hdr {
	__u8 version;
	__u8 reserved[3];
	__u32 flags;
	__u8 reserved2[40];
};

/* The header is followed by a payload from the source. */
#define HVPIPE_MSG_AVAILABLE		0x01
/*
 * The pipe to the source was lost; no payload follows. poll() reports
 * POLLHUP (with POLLIN) while this notice is queued and unread: reading it
 * ends the hang-up, and a new loss sets it again.
 */
#define HVPIPE_LOST_CONNECTION		0x02

/**
 * PAPR_HVPIPE_IOC_CREATE_HANDLE - Open a file descriptor for one source.
 *
 * The argument points to a __u32 source ID of the form 0xCCRRQQQQ: CC
 * the source type (0x02 for an HMC), RR reserved (0x00), QQQQ the
 * source index. The new fd is O_RDWR and close-on-exec; write() sends
 * to the source, read() and poll() receive from it.
 *
 * Return: the new file descriptor, or -1 with errno set to one of:
 *
 * * EFAULT - the argument cannot be read.
 * * EINVAL - the source type is not 0x02 or the reserved byte is not 0.
 * * EALREADY - a file descriptor for this source is already open.
 * * ENOMEM - no memory.
 * * EMFILE - no free file descriptor in the process.
 * * ENFILE - no free file in the system.
 * * ENOTTY - an ioctl command other than this one (checked before the
 *   argument is read).
 */
#define PAPR_HVPIPE_IOC_CREATE_HANDLE	_IOW(PAPR_MISCDEV_IOC_ID, 9, __u32)

#endif /* _UAPI_PAPR_HVPIPE_H_ */
