package actors

// replyOnPanic answers a request whose handler panicked, so the requester
// gets an error instead of waiting for its deadline, then lets the panic go on
// to the supervisor.
func replyOnPanic(m *Message) {
	if r := recover(); r != nil {
		if m != nil && m.IsRequest() && !m.replied {
			_ = m.ReplyError(500, "internal error: handler failed")
		}
		panic(r)
	}
}

// handle runs the application handler for m inside its process span. A
// request without a handler is answered 501; a panicking handler still
// answers a pending request (replyOnPanic), ends the span as failed and
// re-panics for the supervisor.
//
// enter and exit, when set, bracket the handler call (the hub's handler
// concurrency limit, the client's in-callback count); they are built once,
// not per message.
func handle(t *telemetry, in *inbound, m *Message, link bool, handler func(*Message), enter, exit func()) {
	ctx, span := t.startProcess(m, link)
	m.ctx = ctx // the supervisor parents a failure span to it (inbound.TraceContext)
	start := t.handlerStart()
	defer func() {
		r := recover()
		t.finishProcess(ctx, span, start, m.Kind, r)
		if r != nil {
			// The supervisor keeps the failed frame (its trace context),
			// so it must not be reused even if the handler released it.
			in.ref()
			panic(r)
		}
	}()
	if handler == nil {
		if m.IsRequest() {
			_ = m.ReplyError(501, "no handler")
		}
		return
	}
	if enter != nil {
		enter()
		defer exit()
	}
	defer replyOnPanic(m)
	handler(m)
}
