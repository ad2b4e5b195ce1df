// Command mockprovider is a stand-in for the pulumi-resource-aws and
// pulumi-resource-awsx plugins, which cannot be fetched here: it speaks the
// real provider gRPC protocol to the real Pulumi engine, answers Create and
// Update with what AWS would compute (tests/fakeaws), diffs properties
// honestly, refuses what ECS refuses (ecs.go) and what S3 refuses of a
// notification to a queue that has not allowed it (s3.go), and constructs awsx's Vpc
// component. Installed under both names with `pulumi plugin install resource
// NAME VERSION --file`; it tells which one it is from its file name.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/inferstack/inferstack/tests/fakeaws"
)

// Versions the program's SDKs ask for.
var versions = map[string]string{"aws": "6.83.4", "awsx": "2.22.0"}

func main() {
	name := strings.TrimPrefix(filepath.Base(os.Args[0]), "pulumi-resource-")
	if _, ok := versions[name]; !ok {
		fmt.Fprintf(os.Stderr, "mockprovider: installed as %q; want pulumi-resource-aws or pulumi-resource-awsx\n", os.Args[0])
		os.Exit(1)
	}
	err := provider.Main(name, func(host *provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
		return &mock{name: name, host: host, ecs: newECSStore(os.Getenv(fakeaws.ECSStateEnv)),
			sqs: newSQSStore(os.Getenv(fakeaws.SQSStateEnv))}, nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

type mock struct {
	pulumirpc.UnimplementedResourceProviderServer
	name string
	host *provider.HostClient
	ecs  *ecsStore
	sqs  *sqsStore
}

var opts = plugin.MarshalOptions{KeepUnknowns: true, KeepSecrets: true, KeepResources: true, KeepOutputValues: true}

func unmarshal(s *structpb.Struct) (resource.PropertyMap, error) {
	return plugin.UnmarshalProperties(s, opts)
}
func marshal(m resource.PropertyMap) (*structpb.Struct, error) {
	return plugin.MarshalProperties(m, opts)
}

func (p *mock) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: versions[p.name]}, nil
}

func (p *mock) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (p *mock) DiffConfig(context.Context, *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
}

func (p *mock) Configure(context.Context, *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	return &pulumirpc.ConfigureResponse{AcceptSecrets: true, SupportsPreview: true, AcceptResources: true, AcceptOutputs: true}, nil
}

func (p *mock) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

// Diff compares old and new inputs property by property: only a real
// change is an update, and nothing is replaced.
func (p *mock) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	olds, err := unmarshal(req.GetOldInputs())
	if err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	var changed []string
	for k := range keys(olds, news) {
		o, n := olds[k], news[k]
		if !o.DeepEquals(n) {
			changed = append(changed, string(k))
		}
	}
	sort.Strings(changed)
	if len(changed) == 0 {
		return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
	}
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_SOME, Diffs: changed}, nil
}

func keys(maps ...resource.PropertyMap) map[resource.PropertyKey]bool {
	all := map[resource.PropertyKey]bool{}
	for _, m := range maps {
		for k := range m {
			all[k] = true
		}
	}
	return all
}

func (p *mock) Create(_ context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	inputs, err := unmarshal(req.GetProperties())
	if err != nil {
		return nil, err
	}
	urn := resource.URN(req.GetUrn())
	id, outs := fakeaws.Outputs(string(urn.Type()), urn.Name(), inputs)
	// A preview calls no AWS API, so it neither checks nor changes ECS or SQS.
	if !req.GetPreview() {
		if err := p.ecs.create(string(urn.Type()), urn.Name(), id, inputs); err != nil {
			return nil, err
		}
		if err := p.sqs.create(string(urn.Type()), urn.Name(), inputs); err != nil {
			return nil, err
		}
	}
	props, err := marshal(outs)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CreateResponse{Id: id, Properties: props}, nil
}

// Read (refresh) reports the resource as it was and leaves the ECS state as is.
func (p *mock) Read(_ context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	return &pulumirpc.ReadResponse{Id: req.GetId(), Properties: req.GetProperties(), Inputs: req.GetInputs()}, nil
}

func (p *mock) Update(_ context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	urn := resource.URN(req.GetUrn())
	if !req.GetPreview() {
		olds, err := unmarshal(req.GetOlds())
		if err != nil {
			return nil, err
		}
		if err := p.ecs.change(string(urn.Type()), req.GetId(), olds, news); err != nil {
			return nil, err
		}
		if err := p.sqs.change(string(urn.Type()), urn.Name(), olds, news); err != nil {
			return nil, err
		}
	}
	_, outs := fakeaws.Outputs(string(urn.Type()), urn.Name(), news)
	props, err := marshal(outs)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.UpdateResponse{Properties: props}, nil
}

// Delete succeeds unless ECS would refuse it (S3 and SQS refuse none); the request carries the id
// and the last outputs (inputs plus computed names), which say what the
// resource held.
func (p *mock) Delete(_ context.Context, req *pulumirpc.DeleteRequest) (*emptypb.Empty, error) {
	olds, err := unmarshal(req.GetProperties())
	if err != nil {
		return nil, err
	}
	typ := string(resource.URN(req.GetUrn()).Type())
	if err := p.ecs.remove(typ, req.GetId(), olds); err != nil {
		return nil, err
	}
	if err := p.sqs.remove(typ, olds); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// vpc is awsx's Vpc component as the program sees it.
type vpc struct {
	pulumi.ResourceState
	VpcID            pulumi.StringOutput      `pulumi:"vpcId"`
	PrivateSubnetIDs pulumi.StringArrayOutput `pulumi:"privateSubnetIds"`
	PublicSubnetIDs  pulumi.StringArrayOutput `pulumi:"publicSubnetIds"`
}

// image is awsx's ecr.Image component as the program sees it.
type image struct {
	pulumi.ResourceState
	ImageURI pulumi.StringOutput `pulumi:"imageUri"`
}

// Construct builds the awsx components the program uses: ec2:Vpc and
// ecr:Image (which pretends to build and push, and returns the digest).
func (p *mock) Construct(ctx context.Context, req *pulumirpc.ConstructRequest) (*pulumirpc.ConstructResponse, error) {
	return provider.Construct(ctx, req, p.host.EngineConn(), func(ctx *pulumi.Context, typ, name string, inputs provider.ConstructInputs, options pulumi.ResourceOption) (*provider.ConstructResult, error) {
		switch typ {
		case "awsx:ec2:Vpc":
		case "awsx:ecr:Image":
			args, err := inputs.Map()
			if err != nil {
				return nil, err
			}
			img := &image{}
			if err := ctx.RegisterComponentResource(typ, name, img, options); err != nil {
				return nil, err
			}
			img.ImageURI = pulumi.ToOutput(args["repositoryUrl"]).ApplyT(func(repo any) string {
				return fakeaws.ImageURI(fmt.Sprint(repo), name)
			}).(pulumi.StringOutput)
			if err := ctx.RegisterResourceOutputs(img, pulumi.Map{"imageUri": img.ImageURI}); err != nil {
				return nil, err
			}
			return provider.NewConstructResult(img)
		default:
			return nil, fmt.Errorf("mockprovider: cannot construct %s", typ)
		}
		v := &vpc{}
		if err := ctx.RegisterComponentResource(typ, name, v, options); err != nil {
			return nil, err
		}
		_, outs := fakeaws.Outputs(typ, name, resource.PropertyMap{})
		v.VpcID = pulumi.String(outs["vpcId"].StringValue()).ToStringOutput()
		v.PrivateSubnetIDs = toStrings(outs["privateSubnetIds"]).ToStringArrayOutput()
		v.PublicSubnetIDs = toStrings(outs["publicSubnetIds"]).ToStringArrayOutput()
		if err := ctx.RegisterResourceOutputs(v, pulumi.Map{"vpcId": v.VpcID, "privateSubnetIds": v.PrivateSubnetIDs, "publicSubnetIds": v.PublicSubnetIDs}); err != nil {
			return nil, err
		}
		return provider.NewConstructResult(v)
	})
}

func toStrings(v resource.PropertyValue) pulumi.StringArray {
	var out pulumi.StringArray
	for _, e := range v.ArrayValue() {
		out = append(out, pulumi.String(e.StringValue()))
	}
	return out
}
