package inference

import (
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"
)

func TestHardwareFromProc(t *testing.T) {
	t.Parallel()
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	for _, c := range []struct {
		name  string
		files fstest.MapFS
		cpu   string
		gpus  []string
	}{
		{"nothing to read", fstest.MapFS{}, "", nil},
		{"x86", fstest.MapFS{"proc/cpuinfo": file("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7R13 Processor\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7R13 Processor\n")},
			"AMD EPYC 7R13 Processor", nil},
		{"graviton", fstest.MapFS{"proc/cpuinfo": file("processor\t: 0\nBogoMIPS\t: 243.75\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU part\t: 0xd40\n\nprocessor\t: 1\nCPU implementer\t: 0x41\nCPU part\t: 0xd40\n")},
			"CPU implementer 0x41, CPU part 0xd40", nil},
		{"two gpus", fstest.MapFS{
			"proc/driver/nvidia/gpus/0000:00:1f.0/information": file("Model: \t\t NVIDIA L4\nIRQ:   42\nGPU UUID: \t GPU-1\n"),
			"proc/driver/nvidia/gpus/0000:00:1e.0/information": file("Model: \t\t NVIDIA A10G\nIRQ:   41\n"),
		}, "", []string{"NVIDIA A10G", "NVIDIA L4"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, c.cpu, cpuModel(c.files))
			require.Equal(t, c.gpus, nvidiaGPUs(c.files))
		})
	}
}
