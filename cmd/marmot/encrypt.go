package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/marmotws/marmot"
)

// encryptFlags are the encryption flags shared by serve and connect.
type encryptFlags struct {
	key, keyFile, mode, profile, acceptModes, compatSalt string
	keySize                                              int
	allowLegacy                                          bool
}

func addEncryptFlags(fs *flag.FlagSet) *encryptFlags {
	e := &encryptFlags{}
	fs.StringVar(&e.key, "encrypt-key", "", "encryption passphrase; turns encryption on (visible in the process list: prefer --encrypt-key-file)")
	fs.StringVar(&e.keyFile, "encrypt-key-file", "", "read the encryption passphrase from this file (trailing newline ignored); turns encryption on")
	fs.StringVar(&e.mode, "encrypt-mode", "cbc", "AES mode: ecb|cbc|cfb|ofb|ctr|gcm|cfc|ofc|ctc (ecb leaks patterns)")
	fs.IntVar(&e.keySize, "encrypt-key-size", 256, "AES key size: 128|192|256")
	fs.StringVar(&e.profile, "encrypt-profile", "secure", "secure (authenticated, marmot.v1) or compat (byte-exact with the Delphi components, synopsejson)")
	fs.StringVar(&e.acceptModes, "encrypt-accept-modes", "", "comma-separated modes the peer may use instead of --encrypt-mode (answered in kind)")
	fs.StringVar(&e.compatSalt, "encrypt-compat-salt", "current", "compat key derivation: current or july2025")
	fs.BoolVar(&e.allowLegacy, "encrypt-allow-legacy-handshake", false, "secure profile: also speak the handshake of marmot before forward secrecy (version 1) with peers that only speak it; a leaked key then decrypts their recorded traffic")
	return e
}

// apply fills cfg; encryption stays off unless a key was given.
func (e *encryptFlags) apply(cfg *marmot.EncryptionConfig) error {
	if e.key != "" && e.keyFile != "" {
		return errors.New("give --encrypt-key or --encrypt-key-file, not both")
	}
	key := e.key
	if e.keyFile != "" {
		b, err := os.ReadFile(e.keyFile)
		if err != nil {
			return fmt.Errorf("--encrypt-key-file: %w", err)
		}
		key = strings.TrimRight(string(b), "\r\n")
		if key == "" {
			return fmt.Errorf("--encrypt-key-file %s is empty", e.keyFile)
		}
	}
	if key == "" {
		return nil
	}
	cfg.EncryptionEnabled = true
	cfg.EncryptionKey = key
	cfg.EncryptionMode = e.mode
	cfg.EncryptionKeySize = e.keySize
	cfg.EncryptionProfile = e.profile
	cfg.EncryptionCompatSalt = e.compatSalt
	cfg.EncryptionAllowLegacyHandshake = e.allowLegacy
	if e.acceptModes != "" {
		cfg.EncryptionAcceptModes = strings.Split(e.acceptModes, ",")
	}
	return nil
}
