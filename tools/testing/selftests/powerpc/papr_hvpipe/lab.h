/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The guest side of the papr-hvpipe lab's control channel: a virtio-serial
 * port through which the tests ask the host to play the HMCs (send, echo,
 * disconnect, inject firmware faults). The protocol is specified at the top
 * of the lab's conductor (lab/conductor.py in the papr-hvpipe project).
 */
#ifndef _SELFTESTS_PAPR_HVPIPE_LAB_H
#define _SELFTESTS_PAPR_HVPIPE_LAB_H

#include <pthread.h>
#include <stddef.h>
#include <linux/types.h>

#include "../../kselftest.h"

#define LAB_PORT_NAME		"org.papr-hvpipe.lab"
#define LAB_MAX_SOURCES		16
#define LAB_BUF_SIZE		16384
#define LAB_TIMEOUT_MS		60000

struct lab {
	int fd;
	unsigned int seq;
	pthread_mutex_t lock;
	size_t len;
	char buf[LAB_BUF_SIZE];
	unsigned int nsources;
	__u32 srcids[LAB_MAX_SOURCES];
};

struct lab *lab_open(void);
void lab_close(struct lab *lab);
int lab_req(struct lab *lab, char *out, size_t outlen, const char *fmt, ...)
	__printf(4, 5);
int lab_do(struct lab *lab, const char *fmt, ...)
	__printf(2, 3);
long long lab_stat(struct lab *lab, __u32 srcid, const char *name);
int lab_send(struct lab *lab, __u32 srcid, const void *data, size_t len,
	     unsigned int delay_ms);
int lab_recv(struct lab *lab, __u32 srcid, void *data, size_t len,
	     unsigned int timeout_ms);
void lab_pattern(void *buf, size_t len, unsigned int seed);

#endif /* _SELFTESTS_PAPR_HVPIPE_LAB_H */
