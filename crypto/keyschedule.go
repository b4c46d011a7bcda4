package crypto

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
)

// keySchedule turns a finished handshake's secrets into confirmation tags
// and session keys (docs/ENCRYPTION.md section 2.4):
//
//	IKM = master key                      (version 1)
//	    | master key ‖ X25519 shared secret (version 2)
//	PRK = HKDF-Extract(SHA-256, salt = clientNonce ‖ serverNonce, IKM)
//	th  = SHA-256(ServerHello ‖ ClientHello minus its tag)
//
// and every HKDF label starts with "marmot v1 " or "marmot v2 ", so the
// two versions never share a key.
type keySchedule struct {
	prk   []byte
	th    [sha256.Size]byte
	label string
}

func newKeySchedule(v uint8, mk *MasterKey, dh, serverHello, clientHello []byte, cn, sn *[NonceSize]byte) (*keySchedule, error) {
	salt := make([]byte, 0, 2*NonceSize)
	salt = append(append(salt, cn[:]...), sn[:]...)
	ikm := make([]byte, 0, len(mk.key)+len(dh))
	ikm = append(append(ikm, mk.key[:]...), dh...)
	defer clear(ikm)
	clear(dh)
	prk, err := hkdf.Extract(sha256.New, ikm, salt)
	if err != nil {
		return nil, err
	}
	th := sha256.New()
	th.Write(serverHello)
	th.Write(clientHello[:len(clientHello)-ConfirmSize])
	ks := &keySchedule{prk: prk, label: "marmot v1 "}
	if v != HandshakeV1 {
		ks.label = "marmot v2 "
	}
	th.Sum(ks.th[:0])
	return ks, nil
}

func (k *keySchedule) confirm(label string, extra []byte) []byte {
	key, err := hkdf.Expand(sha256.New, k.prk, k.label+label+string(k.th[:]), 32)
	if err != nil {
		panic(err) // only for absurd lengths
	}
	m := hmac.New(sha256.New, key)
	m.Write(k.th[:])
	m.Write(extra)
	clear(key)
	return m.Sum(nil)
}

func (k *keySchedule) clientConfirm() []byte { return k.confirm("confirm c2s", nil) }
func (k *keySchedule) serverConfirm(clientTag []byte) []byte {
	return k.confirm("confirm s2c", clientTag)
}

func (k *keySchedule) session(m Mode, size KeySize, server bool) (*Session, error) {
	c2s, err := newDirection(k.prk, k.label+"c2s", k.th[:], m, size, !server)
	if err != nil {
		return nil, err
	}
	s2c, err := newDirection(k.prk, k.label+"s2c", k.th[:], m, size, server)
	if err != nil {
		return nil, err
	}
	clear(k.prk)
	s := &Session{mode: m, size: size, server: server, send: c2s, recv: s2c}
	if server {
		s.send, s.recv = s2c, c2s
	}
	return s, nil
}
