/* SPDX-License-Identifier: GPL-2.0-only */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM papr_hvpipe

#if !defined(_PAPR_HVPIPE_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _PAPR_HVPIPE_TRACE_H

#include <linux/tracepoint.h>

/*
 * papr_hvpipe_event - An event interrupt named a source.
 * @srcid: Source named by the event.
 * @type:  Event type byte (0x01 payload, 0x02 lost connection).
 */
TRACE_EVENT(papr_hvpipe_event,
	    TP_PROTO(u32 srcid, u32 type),
	    TP_ARGS(srcid, type),
	    TP_STRUCT__entry(__field(u32, srcid)
			     __field(u32, type)),
	    TP_fast_assign(__entry->srcid = srcid;
			   __entry->type = type;),
	    TP_printk("srcid=0x%08x type=0x%02x", __entry->srcid, __entry->type)
);

/*
 * papr_hvpipe_send - ibm,send-hvpipe-msg returned.
 * @srcid:  Destination source.
 * @len:    Payload bytes.
 * @status: Final RTAS status.
 */
TRACE_EVENT(papr_hvpipe_send,
	    TP_PROTO(u32 srcid, u32 len, s32 status),
	    TP_ARGS(srcid, len, status),
	    TP_STRUCT__entry(__field(u32, srcid)
			     __field(u32, len)
			     __field(s32, status)),
	    TP_fast_assign(__entry->srcid = srcid;
			   __entry->len = len;
			   __entry->status = status;),
	    TP_printk("srcid=0x%08x len=%u status=%d",
		      __entry->srcid, __entry->len, __entry->status)
);

/*
 * papr_hvpipe_receive - ibm,receive-hvpipe-msg returned.
 * @event_srcid: Source named by the event that started the receive.
 * @srcid:       Source firmware says the payload came from.
 * @len:         Payload bytes.
 * @status:      Final RTAS status.
 */
TRACE_EVENT(papr_hvpipe_receive,
	    TP_PROTO(u32 event_srcid, u32 srcid, u32 len, s32 status),
	    TP_ARGS(event_srcid, srcid, len, status),
	    TP_STRUCT__entry(__field(u32, event_srcid)
			     __field(u32, srcid)
			     __field(u32, len)
			     __field(s32, status)),
	    TP_fast_assign(__entry->event_srcid = event_srcid;
			   __entry->srcid = srcid;
			   __entry->len = len;
			   __entry->status = status;),
	    TP_printk("event_srcid=0x%08x srcid=0x%08x len=%u status=%d",
		      __entry->event_srcid, __entry->srcid, __entry->len,
		      __entry->status)
);

#endif /* _PAPR_HVPIPE_TRACE_H */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE papr_hvpipe_trace
#include <trace/define_trace.h>
