// Package onnxpb holds the Go types of the ONNX protobuf schema, generated from
// Debian's libonnx-dev onnx.proto (ONNX 1.12) so that inferstack can write small
// models itself. Regenerate with `make proto`; do not edit onnx.pb.go by hand.
package onnxpb
