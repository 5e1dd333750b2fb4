package coordinator

import "errors"

// PermanentError marks an error that no retry can fix: the database is not
// initialised, the schema is missing, a permission is denied, the
// configuration is wrong. The engine gives up at once on it, with its own
// message, instead of retrying it as a transient fault.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as permanent (nil stays nil).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err, or an error it wraps, is permanent:
// marked with Permanent, or ErrNoBatch.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p) || errors.Is(err, ErrNoBatch)
}
