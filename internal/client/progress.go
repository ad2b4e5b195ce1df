package client

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sync/errgroup"

	"github.com/inferstack/inferstack/internal/job"
)

// Progress is how far a job is, as a client shows it: its samples and, for
// a job split into shards, how many of them are done.
type Progress struct {
	SamplesDone int64
	// SamplesTotal is 0 while unknown (a split CSV or JSON Lines table
	// counts its rows shard by shard).
	SamplesTotal int64
	// Shards is a split job's shard count (0: one worker runs it), of which
	// ShardsDone are done.
	Shards, ShardsDone int
}

// JobProgress is the progress of a job whose status is s, given the
// statuses of its shards that have started (read under
// job.ShardStatusPrefix; none for a job one worker runs). Once the job is
// assembled its own status says it all; while its shards run they do.
func JobProgress(s job.Status, shards []job.ShardStatus) Progress {
	p := Progress{SamplesDone: s.SamplesDone, SamplesTotal: s.SamplesTotal}
	if s.Shards == nil {
		return p
	}
	p.Shards = s.Shards.Total
	if s.State == job.StateDone || s.Shards.Done >= s.Shards.Total {
		p.ShardsDone = s.Shards.Total
		return p
	}
	var done, total int64
	for _, sh := range shards {
		if sh.State == job.StateDone {
			p.ShardsDone++
		}
		done += sh.SamplesDone
		total += sh.SamplesTotal
	}
	p.SamplesDone = done
	// The plan counts a .npy's or a Parquet table's samples; a text table's
	// are known once every shard has counted its own.
	if p.SamplesTotal == 0 && len(shards) == p.Shards {
		p.SamplesTotal = total
	}
	return p
}

// shardReads bounds the shard statuses read at once.
const shardReads = 16

// shardStatuses reads a split job's shard statuses, rereading only those
// whose ETag changed since the last call with the same cache (nil: read
// all).
type shardStatuses struct {
	mu   sync.Mutex
	seen map[string]cachedShard // by key
}

type cachedShard struct {
	etag   string
	status job.ShardStatus
}

func (c *Client) shardStatuses(ctx context.Context, jobID, plan string, cache *shardStatuses) ([]job.ShardStatus, error) {
	if cache == nil {
		cache = &shardStatuses{}
	}
	cache.mu.Lock()
	if cache.seen == nil {
		cache.seen = map[string]cachedShard{}
	}
	cache.mu.Unlock()
	prefix := job.ShardStatusPrefix(jobID, plan)
	type listed struct{ key, etag string }
	var keys []listed
	pages := s3.NewListObjectsV2Paginator(c.S3, &s3.ListObjectsV2Input{Bucket: aws.String(c.Bucket), Prefix: aws.String(prefix)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list the shards' status under %s: %w", prefix, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, listed{aws.ToString(o.Key), aws.ToString(o.ETag)})
		}
	}
	out := make([]job.ShardStatus, len(keys))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(shardReads)
	for i, k := range keys {
		cache.mu.Lock()
		hit, ok := cache.seen[k.key]
		cache.mu.Unlock()
		if ok && hit.etag == k.etag && k.etag != "" {
			out[i] = hit.status
			continue
		}
		g.Go(func() error {
			var s job.ShardStatus
			found, err := c.getJSON(gctx, k.key, &s)
			if err != nil {
				return fmt.Errorf("read %s: %w", k.key, err)
			}
			if !found { // gone between the list and the read: not started, as far as we know
				return nil
			}
			out[i] = s
			cache.mu.Lock()
			cache.seen[k.key] = cachedShard{etag: k.etag, status: s}
			cache.mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	// A shard whose status vanished between the list and the read is left out.
	return slices.DeleteFunc(out, func(s job.ShardStatus) bool { return s.State == "" }), nil
}

// Progress is the progress of the job whose status is s: for a split job
// still running, from its shards' statuses.
func (c *Client) Progress(ctx context.Context, s job.Status) (Progress, error) {
	return c.progress(ctx, s, nil)
}

func (c *Client) progress(ctx context.Context, s job.Status, cache *shardStatuses) (Progress, error) {
	if s.Shards == nil || s.State == job.StateDone {
		return JobProgress(s, nil), nil
	}
	shards, err := c.shardStatuses(ctx, s.JobID, s.Shards.Plan, cache)
	if err != nil {
		return Progress{}, err
	}
	return JobProgress(s, shards), nil
}
