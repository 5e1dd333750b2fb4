package api_test

import (
	"os"
	"testing"

	"github.com/delegation-program/uptime-coordinator/api/apitest"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const (
	uptimeDays = apitest.UptimeDays
	producers  = apitest.Producers
)

var (
	seed  = apitest.Seed
	serve = apitest.Serve
)
