package services_test

import (
	"testing"

	"vmsup/internal/vmtest"
)

func TestMain(m *testing.M) { vmtest.Main(m) }
