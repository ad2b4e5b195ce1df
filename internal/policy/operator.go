package policy

import "github.com/inferstack/inferstack/internal/job"

// ModelOperator is what the deployer does to the bucket with their own
// rights on AWS, where the Pulumi program uploads the model as a bucket
// object: put, read, replace and delete models under models/, and list
// them. No client or component role gets it; the local stack, which has no
// deployer, gives it to an operator user of its own, so that a user can try
// a model of theirs while the client still may not write models/.
func ModelOperator(bucketARN string) Document {
	list := KnowMissingKeys(bucketARN, job.ModelsPrefix)
	list.Sid = "ListModels"
	return doc(
		allow("ManageModels", []string{"s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload"},
			objects(bucketARN, job.ModelsPrefix)...),
		list,
	)
}
