package wsconn

// frameTracker follows WebSocket frame boundaries in the bytes gorilla reads.
// It does not validate anything (gorilla does); it only has to agree with
// gorilla on where frames and messages end for well-formed input, and never
// misbehave on garbage.
type frameTracker struct {
	hdr       [14]byte
	hlen      int    // header bytes collected
	need      int    // header length, known once two bytes are in
	remain    uint64 // payload bytes left in the current frame
	inPayload bool
	inMessage bool // a fragmented data message is still open
	// shortClose: a close frame with a 1-byte body came by, which gorilla
	// reports as a close without a body (see Conn.run).
	shortClose bool
	// strayRSV1: a control frame or a continuation frame had RSV1 set,
	// which RFC 7692 §6.1 forbids and gorilla lets through when
	// compression is on (see frameConn.Read).
	strayRSV1 bool
}

func (t *frameTracker) betweenMessages() bool {
	return t.hlen == 0 && !t.inPayload && !t.inMessage
}

func (t *frameTracker) observe(b []byte) {
	for len(b) > 0 {
		if t.inPayload {
			k := uint64(len(b))
			if k > t.remain {
				k = t.remain
			}
			t.remain -= k
			b = b[k:]
			if t.remain == 0 {
				t.endFrame()
			}
			continue
		}
		if t.hlen < 2 {
			t.hdr[t.hlen] = b[0]
			t.hlen++
			b = b[1:]
			if t.hlen < 2 {
				continue
			}
			t.need = 2
			switch t.hdr[1] & 0x7f {
			case 126:
				t.need += 2
			case 127:
				t.need += 8
			}
			if t.hdr[1]&0x80 != 0 {
				t.need += 4
			}
		} else {
			k := copy(t.hdr[t.hlen:t.need], b)
			t.hlen += k
			b = b[k:]
		}
		if t.hlen == t.need {
			t.startPayload()
		}
	}
}

func (t *frameTracker) startPayload() {
	switch n := t.hdr[1] & 0x7f; n {
	case 126:
		t.remain = uint64(t.hdr[2])<<8 | uint64(t.hdr[3])
	case 127:
		t.remain = 0
		for _, x := range t.hdr[2:10] {
			t.remain = t.remain<<8 | uint64(x)
		}
	default:
		t.remain = uint64(n)
	}
	t.hlen = 0
	t.inPayload = true
	if t.hdr[0]&0x0f == 0x8 && t.remain == 1 {
		t.shortClose = true
	}
	if t.hdr[0]&rsv1 != 0 && (t.hdr[0]&0x0f == 0 || t.hdr[0]&0x08 != 0) {
		t.strayRSV1 = true
	}
	if t.remain == 0 {
		t.endFrame()
	}
}

func (t *frameTracker) endFrame() {
	t.inPayload = false
	if op := t.hdr[0] & 0x0f; op < 8 { // data or continuation
		t.inMessage = t.hdr[0]&0x80 == 0
	}
}
