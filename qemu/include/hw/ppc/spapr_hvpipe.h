/*
 * QEMU PowerPC pSeries Logical Partition (aka sPAPR) hypervisor pipe
 *
 * Copyright (c) 2026 papr-hvpipe developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_SPAPR_HVPIPE_H
#define HW_SPAPR_HVPIPE_H

#include "hw/qdev-core.h"
#include "qom/object.h"

#define TYPE_SPAPR_HVPIPE "spapr-hvpipe"
OBJECT_DECLARE_SIMPLE_TYPE(SpaprHvpipeState, SPAPR_HVPIPE)

#define TYPE_SPAPR_HVPIPE_SOURCE "spapr-hvpipe-source"
OBJECT_DECLARE_SIMPLE_TYPE(SpaprHvpipeSource, SPAPR_HVPIPE_SOURCE)

/* Source ID 0xCCRRQQQQ: CC is the source type, RR is reserved */
#define SPAPR_HVPIPE_SRCID_TYPE_MASK    0xff000000
#define SPAPR_HVPIPE_SRCID_RESV_MASK    0x00ff0000
#define SPAPR_HVPIPE_SRCID_TYPE_HMC     0x02000000

#define SPAPR_HVPIPE_MAX_PAYLOAD        4048

/* Event types in the "PE" section of an hvpipe event log */
#define SPAPR_HVPIPE_EVENT_PAYLOAD      0x01
#define SPAPR_HVPIPE_EVENT_LOST         0x02

/* How an hvpipe event log is built: well formed or one of the faults */
typedef enum SpaprHvpipeLogShape {
    SPAPR_HVPIPE_LOG_WELL_FORMED = 0,
    SPAPR_HVPIPE_LOG_WRONG_TYPE  = 1,
    SPAPR_HVPIPE_LOG_NO_PE       = 2,
    SPAPR_HVPIPE_LOG_TRUNCATED   = 3,
    SPAPR_HVPIPE_LOG_SHORT_PE    = 4,
    SPAPR_HVPIPE_LOG_SHAPE_MAX,
} SpaprHvpipeLogShape;

typedef struct SpaprMachineState SpaprMachineState;
typedef struct SpaprEventLogEntry SpaprEventLogEntry;

/* Creates the partition's pipe; the machine does it for hvpipe=on */
void spapr_hvpipe_create(SpaprMachineState *spapr);

/*
 * The hvpipe event log for check-exception, or NULL: the model keeps its
 * logs until the guest fetches them (the caller frees the entry)
 */
SpaprEventLogEntry *spapr_hvpipe_take_log(SpaprHvpipeState *pipe);

/* System parameter 64, "hypervisor pipe OS enablement" */
uint8_t spapr_hvpipe_get_enabled(SpaprHvpipeState *pipe);
void spapr_hvpipe_set_enabled(SpaprHvpipeState *pipe, bool enabled);
/* Returns the RTAS status of ibm,set-system-parameter 64 */
int spapr_hvpipe_set_sysparm(SpaprHvpipeState *pipe, uint64_t buffer);

/* Builds an hvpipe event log (spapr_events.c) */
SpaprEventLogEntry *spapr_hvpipe_log_new(SpaprMachineState *spapr,
                                         uint32_t srcid, uint8_t event_type,
                                         SpaprHvpipeLogShape shape,
                                         uint8_t log_type);
/* Raises the hvpipe event interrupt (spapr_events.c) */
void spapr_hvpipe_irq_pulse(SpaprMachineState *spapr);

#endif /* HW_SPAPR_HVPIPE_H */
