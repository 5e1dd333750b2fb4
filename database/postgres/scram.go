package postgres

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// scramIterations is PostgreSQL's default scram_iterations.
const scramIterations = 4096

// scramVerifier computes, client-side, the SCRAM-SHA-256 verifier that
// PostgreSQL stores for password (RFC 5802/7677, PostgreSQL's format
// "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>"). Sent
// instead of the password, it never puts the password in a statement the
// server could log. salt nil draws a random 16-byte salt. The password must
// be ASCII: PostgreSQL normalises others with SASLprep, which this does not
// implement.
func scramVerifier(password string, salt []byte, iterations int) (string, error) {
	for i := range len(password) {
		if password[i] >= 0x80 {
			return "", errors.New("POSTGRES_RO_PASSWORD: only ASCII passwords are supported (the SCRAM verifier is computed client-side without SASLprep)")
		}
	}
	if salt == nil {
		salt = make([]byte, 16)
		if _, err := rand.Read(salt); err != nil {
			return "", fmt.Errorf("drawing a salt: %w", err)
		}
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("deriving the SCRAM key: %w", err)
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac(salted, "Client Key"))
	server := mac(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt), b64(stored[:]), b64(server)), nil
}

// scramMatches reports whether the stored verifier is that of password
// (false for anything that is not a SCRAM-SHA-256 verifier).
func scramMatches(stored, password string) bool {
	rest, ok := strings.CutPrefix(stored, "SCRAM-SHA-256$")
	if !ok {
		return false
	}
	params, _, ok := strings.Cut(rest, "$")
	iter, saltB64, ok2 := strings.Cut(params, ":")
	if !ok || !ok2 {
		return false
	}
	n, err := strconv.Atoi(iter)
	if err != nil || n < 1 {
		return false
	}
	salt, err := base64.StdEncoding.DecodeString(saltB64)
	if err != nil {
		return false
	}
	v, err := scramVerifier(password, salt, n)
	return err == nil && subtle.ConstantTimeCompare([]byte(v), []byte(stored)) == 1
}
