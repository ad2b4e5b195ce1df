// Command inferstack-demo prepares and scores the quick-start job that
// `make demo` runs through `inferstack run`.
//
//	inferstack-demo prepare DIR         write detector.onnx, signal.npy and the planted events
//	inferstack-demo report DIR OUTDIR   compare OUTDIR/probs.npy with what was planted
package main

import (
	"fmt"
	"os"

	"github.com/inferstack/inferstack/internal/demo"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "inferstack-demo: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	switch {
	case len(args) == 2 && args[0] == "prepare":
		s := demo.Default
		if err := s.Prepare(args[1]); err != nil {
			return err
		}
		fmt.Printf("demo: wrote %s/%s (%d windows of %d samples, %d events planted) and %s/%s\n",
			args[1], demo.SignalFile, s.Windows, s.Window, s.Events, args[1], demo.ModelFile)
		return nil
	case len(args) == 3 && args[0] == "report":
		score, err := demo.Report(args[1], args[2])
		if err != nil {
			return err
		}
		fmt.Printf("demo: the detector found %d of %d planted events, with %d false alarms\n",
			score.Found, score.Planted, score.FalseAlarms)
		if len(score.Missed) > 0 {
			fmt.Printf("demo: missed the events in windows %v (the weakest bursts, planted at the noise threshold)\n", score.Missed)
		}
		return nil
	}
	return fmt.Errorf("usage: inferstack-demo prepare DIR | report DIR OUTDIR")
}
