// Package crypto seals and opens marmot's encrypted frames: AES in the nine
// modes of the seed components (ECB, CBC, CFB, OFB, CTR, GCM and mORMot's
// CFC, OFC, CTC), at three key sizes, in an authenticated "secure" profile
// and a byte-exact "compat" profile for Delphi peers.
//
// It is pure: no sockets, no actors, no goroutines, so every decoder can be
// fuzzed alone. The wire formats, key schedule and threat model are in
// docs/ENCRYPTION.md.
//
// # Secure profile (default)
//
// The server stretches its passphrase once (DeriveMasterKey: PBKDF2-SHA256
// or Argon2id with a random salt it announces); a client stretches once per
// salt it sees (Keyring). Each connection runs a three-message handshake
// (NewServerHandshake, NewClientHandshake: ServerHello, ClientHello,
// ServerFinished) that contributes a random nonce and an ephemeral X25519
// key from each side, confirms both sides know the passphrase (ErrWrongKey
// otherwise) and yields a Session with per-direction HKDF keys from both
// the passphrase and the X25519 secret: a passphrase that leaks later does
// not decrypt recorded traffic (forward secrecy). The handshake of earlier
// releases (version 1, no forward secrecy) runs only where
// AllowLegacyHandshake allows it (NewLegacyServerHandshake); otherwise it is
// ErrDowngrade. Session.Seal and Session.Open authenticate every
// byte of every frame (GCM tag, or HMAC-SHA256 for the other modes, on top
// of the CRC MAC for CFC/OFC/CTC), header included, and enforce a strictly
// increasing per-direction sequence number (ErrReplay, ErrOutOfOrder).
//
// # Compat profile
//
// CompatCodec reproduces the seed's format: the "MROM" header, a random IV,
// PKCS#7 padding in every mode, and a key from PBKDF2 with the seed's
// password-derived salt (SaltCurrent or SaltJuly2025). It authenticates
// nothing and has no replay protection; it exists only to talk to existing
// Delphi peers. It decrypts a frame announcing another mode or key size only
// if that one is in its allow-list.
//
// # Low level
//
// Cipher runs one raw mode (mORMot's TAesAbstract.Encrypt/Decrypt) and
// CRCAEAD is mORMot's CFC/OFC/CTC construction; both reproduce mORMot's
// known-answer vectors. The CRC MAC is not a secure MAC (see CRCAEAD).
//
// Keys, passphrases and plaintext never appear in errors, and every type
// holding key material redacts it in String, GoString and Format.
package crypto
