package inference

import (
	"bufio"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
)

// Hardware is what a calibration measured on, as far as it shapes the
// result: the CPU model, the CPUs the process may keep busy, and the GPUs.
// Not the host's name: on ECS every task is a new host, and tasks on like
// hardware share their search.
type Hardware struct {
	Arch string   `json:"arch"`
	CPU  string   `json:"cpu"`  // the CPU model, "" where /proc/cpuinfo does not say
	CPUs int      `json:"cpus"` // usableCPUs
	GPUs []string `json:"gpus,omitempty"`
}

// hostHardware is this process's hardware, read once.
var hostHardware = sync.OnceValue(func() Hardware {
	root := os.DirFS("/")
	return Hardware{Arch: runtime.GOARCH, CPU: cpuModel(root), CPUs: usableCPUs(), GPUs: nvidiaGPUs(root)}
})

// cpuModel is the CPU model /proc/cpuinfo names: "model name" on x86, the
// implementer and part numbers on ARM (Graviton's cpuinfo has no model name).
func cpuModel(root fs.FS) string {
	f, err := root.Open("proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close() //nolint:errcheck // read-only
	var arm []string
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		name, value, ok := strings.Cut(lines.Text(), ":")
		if !ok {
			continue
		}
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		switch name {
		case "model name":
			return value
		case "CPU implementer", "CPU part":
			if len(arm) < 2 {
				arm = append(arm, name+" "+value)
			}
		}
	}
	return strings.Join(arm, ", ")
}

// nvidiaGPUs are the models of the NVIDIA GPUs the driver lists
// (/proc/driver/nvidia/gpus/<bus id>/information, "Model: ..."), sorted;
// none where there is no driver.
func nvidiaGPUs(root fs.FS) []string {
	dirs, err := fs.ReadDir(root, "proc/driver/nvidia/gpus")
	if err != nil {
		return nil
	}
	var models []string
	for _, d := range dirs {
		info := readFile(root, "proc/driver/nvidia/gpus/"+d.Name()+"/information")
		for line := range strings.Lines(info) {
			if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "Model" {
				models = append(models, strings.TrimSpace(value))
			}
		}
	}
	slices.Sort(models)
	return models
}
