package emulator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Region is the region moto's resources live in: the local stack's and the
// tests'.
const Region = "us-east-1"

// Moto is a moto server (AWS emulator) on a loopback port.
type Moto struct {
	URL string
	cmd *exec.Cmd
	out *LockedBuffer

	iam   bool        // IAM enforced (WithIAM)
	admin Credentials // what Env and Config sign with
}

// MotoOption changes how StartMoto starts the server.
type MotoOption func(*motoOptions)

type motoOptions struct{ iam bool }

// WithIAM starts moto with IAM enforced: every request is checked against
// the policies of the IAM user whose keys signed it, as AWS checks a role's.
// StartMoto then creates an admin user that may do anything, and Env and
// Config sign with its keys; Principal creates users with less.
func WithIAM() MotoOption { return func(o *motoOptions) { o.iam = true } }

// motoWithKeySignatures runs moto's server with two fixes to its IAM check,
// which recomputes a request's SigV4 signature from werkzeug's request.url:
// an IRI, with the path decoded and the query decoded but for '%', '&', '=',
// '+', '#', space and control characters (werkzeug.urls.uri_to_iri). moto
// 5.2.1 hands that URL to botocore, which takes the path and the query's
// pairs as they are (only sorting them), so:
//
//   - a key holding 'é', '+' or ',' (which SDKs sign percent-encoded, as S3
//     does) fails with SignatureDoesNotMatch where S3 accepts it. The path is
//     re-encoded as the signer did (S3's canonical URI: every byte but
//     unreserved ones and '/' escaped, once).
//   - a query value holding '/' (prefix=results%2F, delimiter=%2F: what
//     `aws s3 ls s3://B/results/` sends) or ',' or 'é' is signed as
//     prefix=results/, not as the signer's prefix=results%2F. Each name and
//     value is decoded and re-encoded as SigV4's canonical query string
//     has it (every byte but A-Z a-z 0-9 - _ . ~ escaped); botocore sorts.
//
// Both leave the other requests as they were.
const motoWithKeySignatures = `
import sys, urllib.parse
from moto.iam import access_control
create = access_control.IAMRequestBase._create_aws_request
def canonical(part):
    return urllib.parse.quote(urllib.parse.unquote(part), safe="-_.~")
def canonical_query(query):
    pairs = []
    for pair in query.split("&"):
        name, eq, value = pair.partition("=")
        pairs.append(canonical(name) + eq + canonical(value))
    return "&".join(pairs)
def create_encoded(self):
    path, sep, query = self._path.partition("?")
    self._path = urllib.parse.quote(path, safe="/~%") + sep + (canonical_query(query) if query else "")
    return create(self)
access_control.IAMRequestBase._create_aws_request = create_encoded
from moto.server import main
sys.argv = ["moto.server"] + sys.argv[1:]
main()
`

// StartMoto starts `python3 -m moto.server` and waits until it answers.
// Without WithIAM, moto ignores IAM: any keys may do anything.
func StartMoto(ctx context.Context, opts ...MotoOption) (*Moto, error) {
	var o motoOptions
	for _, opt := range opts {
		opt(&o)
	}
	if err := exec.CommandContext(ctx, "python3", "-c", "import moto.server").Run(); err != nil {
		return nil, fmt.Errorf("moto server is not available (%v): the local stack and the tests need moto 5 with its server extra for python3 (pip install 'moto[server]==5.2.1', or use the project's machine image, which has it)", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(addr)
	m := &Moto{URL: "http://" + addr, out: &LockedBuffer{}, iam: o.iam, admin: Credentials{AccessKeyID: "test", SecretAccessKey: "test"}}
	m.cmd = exec.Command("python3", "-m", "moto.server", "-H", host, "-p", port)
	if o.iam {
		m.cmd = exec.Command("python3", "-c", motoWithKeySignatures, "-H", host, "-p", port)
		m.cmd.Env = append(os.Environ(), fmt.Sprintf("INITIAL_NO_AUTH_ACTION_COUNT=%d", adminRequests))
	}
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	// Its own process group, so that Stop kills whatever it spawns and a
	// terminal's Ctrl-C reaches only the stack, which stops moto last.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := StartChild(m.cmd); err != nil {
		return nil, fmt.Errorf("start moto: %w", err)
	}
	err = waitFor(ctx, 60*time.Second, func() error {
		resp, err := http.Get(m.URL + "/moto-api/") // moto's own API: not counted or checked as an AWS request
		if err != nil {
			return err
		}
		_ = resp.Body.Close() // only the answer mattered
		return nil
	})
	if err != nil {
		m.Stop()
		return nil, fmt.Errorf("moto did not start: %w\n%s", err, m.out.String())
	}
	if o.iam {
		if m.admin, err = m.createAdmin(ctx); err != nil {
			m.Stop()
			return nil, fmt.Errorf("moto with IAM: %w\n%s", err, m.out.String())
		}
	}
	return m, nil
}

// Deprioritize runs moto at the lowest CPU priority until restore: a
// benchmark's workers then have the machine's cores first, as on AWS, where
// S3 and SQS take none of a task's CPU.
func (m *Moto) Deprioritize() (restore func(), err error) {
	pid := m.cmd.Process.Pid
	was, err := syscall.Getpriority(syscall.PRIO_PROCESS, pid)
	if err != nil {
		return nil, err
	}
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, pid, 19); err != nil {
		return nil, err
	}
	// Getpriority answers 20 - nice (the raw system call's convention).
	return func() { _ = syscall.Setpriority(syscall.PRIO_PROCESS, pid, 20-was) }, nil
}

// Stop kills the server and its children.
func (m *Moto) Stop() {
	if m.cmd.Process != nil {
		_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
		_ = m.cmd.Wait()
	}
}

// Env is the environment that points an AWS SDK or CLI at this server, as
// the admin when IAM is enforced.
func (m *Moto) Env() []string { return m.env(m.admin) }

// Config is an SDK config for in-process clients of this server, signed as
// the admin when IAM is enforced.
func (m *Moto) Config(ctx context.Context) (aws.Config, error) { return m.config(ctx, m.admin) }

func (m *Moto) env(c Credentials) []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + c.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + c.SecretAccessKey, "AWS_SESSION_TOKEN=",
		"AWS_REGION=" + Region, "AWS_DEFAULT_REGION=" + Region,
		"AWS_ENDPOINT_URL=" + m.URL, "AWS_EC2_METADATA_DISABLED=true",
	}
}

func (m *Moto) config(ctx context.Context, c Credentials) (aws.Config, error) {
	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithRegion(Region),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, "")),
	)
	if err != nil {
		return aws.Config{}, err
	}
	// Set on the config, not as a load option: a load option becomes a
	// config source that clients prefer to cfg.BaseEndpoint, so a test that
	// points one client at a proxy (cfg.BaseEndpoint = proxy) would still
	// reach moto directly.
	cfg.BaseEndpoint = aws.String(m.URL)
	return cfg, nil
}

// CPUTime is the CPU time moto's process has used so far (Linux: from
// /proc; the clock ticks are USER_HZ, 100 a second): benchmarks count the
// emulator's share of the machine, which a deployment does not pay.
func (m *Moto) CPUTime() (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", m.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command's ")" start at the state, field 3:
	// utime and stime are fields 14 and 15.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("moto's /proc stat has %d fields", len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / 100, nil
}
