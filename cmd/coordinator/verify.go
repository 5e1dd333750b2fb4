package main

import (
	"context"
	"errors"
	"io"
)

func verify(ctx context.Context, args []string, stdout io.Writer) error {
	return errors.New("verify: not available in this build")
}
