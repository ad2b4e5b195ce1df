package inference

import (
	"bufio"
	"io/fs"
	"math"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
)

// usableCPUs is how many CPUs the process may keep busy: those it may be
// scheduled on (runtime.NumCPU counts its affinity), capped by its cgroup's
// CPU quota in whole CPUs, which the kernel enforces by throttling.
// runtime.GOMAXPROCS follows the quota too, but rounds it up (a 1-CPU
// container gets 2), which for ORT threads means one throttled thread.
func usableCPUs() int {
	return cappedCPUs(runtime.NumCPU(), cgroupCPULimit(os.DirFS("/")))
}

// cappedCPUs is cpus capped by limit (0: none), at least 1.
func cappedCPUs(cpus int, limit float64) int {
	if limit > 0 {
		cpus = min(cpus, int(math.Floor(limit)))
	}
	return max(1, cpus)
}

// cgroupCPULimit is the tightest CPU quota, in CPUs, on the process's
// cgroup and the ancestors it can see, in cgroup v2 (cpu.max) or v1
// (cpu.cfs_quota_us over cpu.cfs_period_us); 0 when there is none.
func cgroupCPULimit(root fs.FS) float64 {
	f, err := root.Open("proc/self/cgroup")
	if err != nil {
		return 0
	}
	defer f.Close() //nolint:errcheck // read-only
	limit := 0.0
	tighten := func(l float64) {
		if l > 0 && (limit == 0 || l < limit) {
			limit = l
		}
	}
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		// hierarchy-ID:controllers:path; v2 is "0::path".
		fields := strings.SplitN(lines.Text(), ":", 3)
		if len(fields) != 3 {
			continue
		}
		switch {
		case fields[0] == "0" && fields[1] == "":
			for _, dir := range ancestors("sys/fs/cgroup", fields[2]) {
				tighten(quotaV2(readFile(root, dir+"/cpu.max")))
			}
		case hasController(fields[1], "cpu"):
			for _, mount := range []string{"sys/fs/cgroup/cpu", "sys/fs/cgroup/cpu,cpuacct"} {
				for _, dir := range ancestors(mount, fields[2]) {
					tighten(quotaV1(readFile(root, dir+"/cpu.cfs_quota_us"), readFile(root, dir+"/cpu.cfs_period_us")))
				}
			}
		}
	}
	return limit
}

// ancestors are the directories of cgroup p under mount, from p up to the
// mount itself (what a container sees of its hierarchy ends there).
func ancestors(mount, p string) []string {
	var dirs []string
	for p = path.Clean("/" + p); ; p = path.Dir(p) {
		dirs = append(dirs, strings.TrimSuffix(mount+p, "/"))
		if p == "/" {
			return dirs
		}
	}
}

func hasController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

func readFile(root fs.FS, name string) string {
	data, err := fs.ReadFile(root, name)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// quotaV2 reads cpu.max: "QUOTA PERIOD" in microseconds, or "max PERIOD".
func quotaV2(cpuMax string) float64 {
	quota, period, ok := strings.Cut(cpuMax, " ")
	if !ok {
		return 0
	}
	return quotaV1(quota, period)
}

// quotaV1 is quota over period, in CPUs; 0 for no quota ("max", -1).
func quotaV1(quota, period string) float64 {
	q, err1 := strconv.ParseFloat(quota, 64)
	p, err2 := strconv.ParseFloat(period, 64)
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
		return 0
	}
	return q / p
}
