package inference

import (
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"
)

// The default thread count never exceeds the CPUs a cgroup quota allows:
// threads above it are throttled, not run.
func TestCgroupCPULimitBoundsTheDefaultThreads(t *testing.T) {
	t.Parallel()
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s + "\n")} }
	for _, c := range []struct {
		name    string
		files   fstest.MapFS
		limit   float64
		threads int // on a 2-CPU machine
	}{
		{"no cgroup file", fstest.MapFS{}, 0, 2},
		{"v2, no quota", fstest.MapFS{"proc/self/cgroup": file("0::/"), "sys/fs/cgroup/cpu.max": file("max 100000")}, 0, 2},
		{"v2, one CPU (an ECS task of 1024 units)", fstest.MapFS{"proc/self/cgroup": file("0::/"), "sys/fs/cgroup/cpu.max": file("100000 100000")}, 1, 1},
		{"v2, half a CPU", fstest.MapFS{"proc/self/cgroup": file("0::/"), "sys/fs/cgroup/cpu.max": file("50000 100000")}, 0.5, 1},
		{"v2, 1.5 CPUs round down", fstest.MapFS{"proc/self/cgroup": file("0::/"), "sys/fs/cgroup/cpu.max": file("150000 100000")}, 1.5, 1},
		{"v2, a quota above the machine", fstest.MapFS{"proc/self/cgroup": file("0::/"), "sys/fs/cgroup/cpu.max": file("800000 100000")}, 8, 2},
		{"v2, the tightest ancestor wins", fstest.MapFS{
			"proc/self/cgroup":                         file("0::/ecs/task/container"),
			"sys/fs/cgroup/ecs/task/container/cpu.max": file("max 100000"),
			"sys/fs/cgroup/ecs/task/cpu.max":           file("100000 100000"),
			"sys/fs/cgroup/ecs/cpu.max":                file("300000 100000"),
		}, 1, 1},
		{"v1, one CPU", fstest.MapFS{
			"proc/self/cgroup": file("4:memory:/x\n1:cpu,cpuacct:/docker/abc\n0::/"),
			"sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us":  file("100000"),
			"sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": file("100000"),
		}, 1, 1},
		{"v1, no quota", fstest.MapFS{
			"proc/self/cgroup":                    file("1:cpu:/"),
			"sys/fs/cgroup/cpu/cpu.cfs_quota_us":  file("-1"),
			"sys/fs/cgroup/cpu/cpu.cfs_period_us": file("100000"),
		}, 0, 2},
		{"garbage", fstest.MapFS{"proc/self/cgroup": file("0::/"), "sys/fs/cgroup/cpu.max": file("lots")}, 0, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			limit := cgroupCPULimit(c.files)
			require.InDelta(t, c.limit, limit, 1e-9)
			require.Equal(t, c.threads, cappedCPUs(2, limit))
		})
	}
}
