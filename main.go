// Command inferstack (the Pulumi program) deploys the batch inference stack:
// `pulumi up` per environment stack, `pulumi config set inferstack:tier gpu`
// to switch tiers. The composition lives in deploy/.
package main

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/inferstack/inferstack/deploy"
)

func main() {
	pulumi.Run(func(ctx *pulumi.Context) error {
		cfg, err := deploy.ParseConfig(ctx)
		if err != nil {
			return err
		}
		return deploy.Program(ctx, cfg)
	})
}
