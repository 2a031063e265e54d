package natscluster

import (
	"io"

	"github.com/nats-io/nats-server/v2/server"
)

// NewLogger is newLogger for the tests' extra nodes.
func NewLogger(w io.Writer, node string) server.Logger { return newLogger(w, node) }
