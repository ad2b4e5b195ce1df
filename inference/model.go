package inference

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/inferstack/inferstack/inference/manifest"
	"github.com/inferstack/inferstack/inference/npy"
)

// TensorInfo describes one model input or output. Dims of -1 are dynamic.
type TensorInfo = manifest.Tensor

// ModelInfo identifies a model and describes its input and outputs.
type ModelInfo = manifest.Model

// Model is an ONNX model read into memory, hashed and introspected, with the
// sessions created for it.
type Model struct {
	ModelInfo

	data []byte

	mu       sync.Mutex
	sessions map[sessionKey]*Session
	// loadTime is what LoadModel took, reported by the model's first run.
	loadTime     time.Duration
	loadReported bool
	// sessionTime is what creating its last session took: what calibration
	// expects another to cost.
	sessionTime time.Duration
}

type sessionKey struct {
	device  Device
	threads int
}

// LoadModel reads, hashes and introspects the model at path. InitRuntime must
// have succeeded. Every input must be a tensor of a type a source can fill
// (FeedTypes) with a batch axis, the same for all inputs.
func LoadModel(path string) (*Model, error) {
	start := time.Now()
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, withKind(ErrBadModel, "read model: %w", err)
	}
	inputs, outputs, err := ort.GetInputOutputInfoWithONNXData(data)
	if err != nil {
		return nil, withKind(ErrBadModel, "model %s is not a valid onnx model: %s", path, oneLine(err))
	}
	if len(inputs) == 0 {
		return nil, withKind(ErrBadModel, "model %s has no inputs", path)
	}
	sum := sha256.Sum256(data)
	m := &Model{ModelInfo: ModelInfo{Path: path, SHA256: hex.EncodeToString(sum[:]), Bytes: int64(len(data))}, data: data}
	for _, in := range inputs {
		info, err := tensorInfo(in)
		if err != nil {
			return nil, withKind(ErrBadModel, "model %s: %w", path, err)
		}
		if _, ok := elemSizes[info.DType]; !ok {
			return nil, withKind(ErrBadModel, "model %s: input %q is %s; inferstack feeds %s", path, info.Name, info.DType, FeedTypes)
		}
		if len(info.Shape) < 1 {
			return nil, withKind(ErrBadModel, "model %s: input %q is a scalar; inferstack needs a batch axis", path, info.Name)
		}
		if len(m.Inputs) > 0 && info.Shape[0] != m.Inputs[0].Shape[0] {
			return nil, withKind(ErrBadModel, "model %s: inputs %q and %q have different batch dims (%d, %d)", path,
				m.Inputs[0].Name, info.Name, m.Inputs[0].Shape[0], info.Shape[0])
		}
		m.Inputs = append(m.Inputs, info)
	}
	for _, o := range outputs {
		info, err := tensorInfo(o)
		if err != nil {
			return nil, withKind(ErrBadModel, "model %s: %w", path, err)
		}
		if _, ok := npy.DTypeOf(info.DType); !ok {
			return nil, withKind(ErrBadModel, "model %s: output %q has dtype %s, which has no .npy form", path, info.Name, info.DType)
		}
		m.Outputs = append(m.Outputs, info)
	}
	m.loadTime = time.Since(start)
	return m, nil
}

// takeLoadTimes returns, to the first caller only, how long loading ONNX
// Runtime (if no run has reported it yet) and this model took.
func (m *Model) takeLoadTimes() (runtimeLoad, modelLoad float64) {
	m.mu.Lock()
	if !m.loadReported {
		m.loadReported = true
		modelLoad = m.loadTime.Seconds()
	}
	m.mu.Unlock()
	ortEnv.Lock()
	defer ortEnv.Unlock()
	if !ortEnv.loadReported {
		ortEnv.loadReported = true
		runtimeLoad = ortEnv.loadTime.Seconds()
	}
	return runtimeLoad, modelLoad
}

// BatchDim is the models' batch dim: fixed (> 0) or dynamic (-1).
func (m *Model) BatchDim() int64 { return m.Inputs[0].Shape[0] }

func (m *Model) inputNames() []string {
	names := make([]string, len(m.Inputs))
	for i, in := range m.Inputs {
		names[i] = in.Name
	}
	return names
}

func (m *Model) outputNames() []string {
	names := make([]string, len(m.Outputs))
	for i, o := range m.Outputs {
		names[i] = o.Name
	}
	return names
}

func tensorInfo(io ort.InputOutputInfo) (TensorInfo, error) {
	if io.OrtValueType != ort.ONNXTypeTensor {
		return TensorInfo{}, fmt.Errorf("%q is a %s, not a tensor", io.Name, io.OrtValueType)
	}
	name, ok := dtypeNames[io.DataType]
	if !ok {
		name = strings.ToLower(io.DataType.String())
	}
	return TensorInfo{Name: io.Name, DType: name, Shape: []int64(io.Dimensions.Clone())}, nil
}

// FeedTypes are the input element types a source can fill.
const FeedTypes = "float32, float16, float64, int8-64, uint8-64 or bool inputs"

// elemSizes are the bytes of one element of each type a model input may have.
var elemSizes = map[string]int64{"float32": 4, "float16": 2, "float64": 8, "bool": 1, "int8": 1, "int16": 2, "int32": 4, "int64": 8,
	"uint8": 1, "uint16": 2, "uint32": 4, "uint64": 8}

var dtypeNames = map[ort.TensorElementDataType]string{
	ort.TensorElementDataTypeFloat: "float32", ort.TensorElementDataTypeDouble: "float64",
	ort.TensorElementDataTypeFloat16: "float16", ort.TensorElementDataTypeBool: "bool",
	ort.TensorElementDataTypeInt8: "int8", ort.TensorElementDataTypeInt16: "int16",
	ort.TensorElementDataTypeInt32: "int32", ort.TensorElementDataTypeInt64: "int64",
	ort.TensorElementDataTypeUint8: "uint8", ort.TensorElementDataTypeUint16: "uint16",
	ort.TensorElementDataTypeUint32: "uint32", ort.TensorElementDataTypeUint64: "uint64",
}

func ortType(dtype string) ort.TensorElementDataType {
	for t, name := range dtypeNames {
		if name == dtype {
			return t
		}
	}
	return ort.TensorElementDataTypeUndefined
}

// Device selects the execution provider.
type Device = manifest.Device

// Devices: auto tries CUDA and falls back to CPU; gpu insists on CUDA.
const (
	DeviceAuto Device = "auto"
	DeviceCPU  Device = "cpu"
	DeviceGPU  Device = "gpu"
)

// ParseDevice accepts auto, cpu and gpu.
func ParseDevice(s string) (Device, error) {
	switch d := Device(s); d {
	case DeviceAuto, DeviceCPU, DeviceGPU:
		return d, nil
	}
	return "", fmt.Errorf("device %q: want auto, cpu or gpu", s)
}

// Session is one ORT session of a model on the device it really got.
type Session struct {
	ort *ort.DynamicAdvancedSession
	// Device is where the session runs: cpu or gpu.
	Device Device
	// Fallback says why device auto ended on the CPU ("" when it did not).
	Fallback string
	Threads  int
}

// DefaultThreads is the intra-op thread count when none is chosen or
// calibrated: all the cores the process may use (usableCPUs: its cgroup's
// CPU quota bounds them). Leaving one to the reader and writer was measured
// slower on 2 cores, in the pipeline (1.8x at batch 64 for both convolutional
// models of BenchmarkCalibrationGain, 1.07x for an MLP) and in a worker with
// its S3 transfers beside it (1.07x, BenchmarkWorkerThreads).
func DefaultThreads() int { return usableCPUs() }

// Session returns the model's session for device and threads (0 =
// DefaultThreads), creating it on first use. Sessions are kept until Close:
// a worker runs many jobs on one model, and a warm session skips ORT's
// graph optimisation and first-run allocations. ORT sessions are safe for
// concurrent Run calls.
func (m *Model) Session(device Device, threads int) (*Session, error) {
	if threads <= 0 {
		threads = DefaultThreads()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	key := sessionKey{device, threads}
	if s, ok := m.sessions[key]; ok {
		return s, nil
	}
	start := time.Now()
	s, err := m.NewSession(device, threads)
	if err != nil {
		return nil, err
	}
	m.sessionTime = time.Since(start)
	if m.sessions == nil {
		m.sessions = map[sessionKey]*Session{}
	}
	m.sessions[key] = s
	return s, nil
}

// sessionCost is what Session(device, threads) is expected to take: nothing
// for a session the model holds, else what its last creation took (the
// thread count barely matters: 25.7 vs 25.4 ms for the classifier at 1 and
// 2 threads, BenchmarkFixedCosts).
func (m *Model) sessionCost(device Device, threads int) time.Duration {
	if threads <= 0 {
		threads = DefaultThreads()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.sessions[sessionKey{device, threads}]; ok {
		return 0
	}
	return m.sessionTime
}

// Close releases the sessions Session created.
func (m *Model) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.sessions {
		s.Close()
	}
	m.sessions = nil
}

// NewSession creates a session with threads intra-op threads (0 = DefaultThreads).
func (m *Model) NewSession(device Device, threads int) (*Session, error) {
	if threads <= 0 {
		threads = DefaultThreads()
	}
	if device == DeviceCPU {
		s, err := m.newSession(threads, false)
		if err != nil {
			return nil, err
		}
		return &Session{ort: s, Device: DeviceCPU, Threads: threads}, nil
	}
	ortEnv.Lock()
	reason := ortEnv.cudaMissing
	ortEnv.Unlock()
	if reason == "" {
		var s *ort.DynamicAdvancedSession
		err := preservingSignalHandlers(func() (err error) {
			s, err = m.newSession(threads, true)
			return err
		})
		if err == nil {
			return &Session{ort: s, Device: DeviceGPU, Threads: threads}, nil
		}
		reason = oneLine(err)
		ortEnv.Lock()
		ortEnv.cudaMissing = reason
		ortEnv.Unlock()
	}
	if device == DeviceGPU {
		return nil, withKind(ErrUnavailable, "cuda execution provider unavailable: %s (use --device auto or cpu)", reason)
	}
	s, err := m.newSession(threads, false)
	if err != nil {
		return nil, err
	}
	return &Session{ort: s, Device: DeviceCPU, Fallback: reason, Threads: threads}, nil
}

func (m *Model) newSession(threads int, cuda bool) (*ort.DynamicAdvancedSession, error) {
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	defer opts.Destroy()
	// Spinning intra-op threads fight the reader and writer for 2 cores and
	// were measured 2-4x slower there; sequential execution keeps one pool.
	for _, err := range []error{
		opts.SetIntraOpNumThreads(threads),
		opts.SetInterOpNumThreads(1),
		opts.SetExecutionMode(ort.ExecutionModeSequential),
		opts.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"),
		opts.AddSessionConfigEntry("session.inter_op.allow_spinning", "0"),
	} {
		if err != nil {
			return nil, fmt.Errorf("session options: %w", err)
		}
	}
	if cuda {
		cudaOpts, err := ort.NewCUDAProviderOptions()
		if err != nil {
			return nil, err
		}
		defer cudaOpts.Destroy()
		if err := opts.AppendExecutionProviderCUDA(cudaOpts); err != nil {
			return nil, err
		}
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(m.data, m.inputNames(), m.outputNames(), opts)
	if err != nil {
		if cuda {
			return nil, err
		}
		return nil, withKind(ErrBadModel, "create session for %s: %s", m.Path, oneLine(err))
	}
	return s, nil
}

// Run runs one batch, one value per model input in the model's order;
// outputs must be pre-allocated to the batch's shapes.
func (s *Session) Run(inputs []ort.Value, outputs []ort.Value) error {
	return s.ort.Run(inputs, outputs)
}

// Close releases the session.
func (s *Session) Close() {
	if s != nil && s.ort != nil {
		s.ort.Destroy()
		s.ort = nil
	}
}

// oneLine flattens multi-line ORT messages so every error stays one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
