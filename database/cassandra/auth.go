package cassandra

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/aws-sigv4-auth-cassandra-gocql-driver-plugin/sigv4"
	"github.com/gocql/gocql"

	"github.com/delegation-program/uptime-coordinator/config"
)

// credentialsTimeout bounds one refresh of AWS credentials during a
// handshake; the SigV4 plugin's callback carries no context of its own.
const credentialsTimeout = 30 * time.Second

// auth is how Open authenticates: the gocql authenticator and, for SigV4, the
// AWS credentials behind it.
type auth struct {
	authenticator gocql.Authenticator
	aws           aws.CredentialsProvider // nil for password authentication
	region        string
	describe      string // for errors and logs; never holds a secret
}

// newAuth picks the authentication as the original coordinator does:
// username and password when set, else AWS SigV4 with the credentials the
// AWS SDK's default chain finds (environment keys, web identity such as EKS
// IRSA, shared config and profiles, container and instance roles), in the
// region of awsRegion. stsEndpoint overrides the STS endpoint web identity
// uses (tests only).
func newAuth(ctx context.Context, cfg config.Cassandra, stsEndpoint string) (auth, error) {
	if cfg.Username != "" || cfg.Password != "" {
		if cfg.Username == "" || cfg.Password == "" {
			return auth{}, errors.New("cassandra: password authentication needs both a username and a password")
		}
		return auth{
			authenticator: gocql.PasswordAuthenticator{Username: cfg.Username, Password: cfg.Password},
			describe:      "password authentication as " + cfg.Username,
		}, nil
	}

	region, err := awsRegion(cfg)
	if err != nil {
		return auth{}, err
	}
	var client *sts.Client
	if stsEndpoint != "" {
		client = sts.New(sts.Options{Region: region, BaseEndpoint: aws.String(stsEndpoint)})
	}
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRegion(region),
		awsconfig.WithWebIdentityRoleCredentialOptions(func(o *stscreds.WebIdentityRoleOptions) {
			if client != nil {
				o.Client = client
			}
			if o.TokenRetriever != nil {
				o.TokenRetriever = trimmedToken{o.TokenRetriever}
			}
		}),
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return auth{}, fmt.Errorf("cassandra: loading the AWS configuration: %w", err)
	}
	if awsCfg.Credentials == nil {
		return auth{}, errors.New("cassandra: the AWS default credential chain found no credential source")
	}
	return auth{
		authenticator: sigv4.NewAwsAuthenticatorWithCredentialCallback(region, credentialsCallback(awsCfg.Credentials)),
		aws:           awsCfg.Credentials, // a cache: refreshed before expiry
		region:        region,
		describe:      "AWS SigV4 with the AWS default credential chain in " + region,
	}, nil
}

// credentialsCallback adapts an AWS credentials provider to the SigV4
// plugin, which asks for credentials on every handshake; the SDK's cache in
// front refreshes them before they expire.
func credentialsCallback(p aws.CredentialsProvider) sigv4.SigV4CredentialsCallback {
	return func() (sigv4.SigV4Credentials, error) {
		ctx, cancel := context.WithTimeout(context.Background(), credentialsTimeout)
		defer cancel()
		c, err := p.Retrieve(ctx)
		if err != nil {
			return sigv4.SigV4Credentials{}, fmt.Errorf("retrieving AWS credentials: %w", err)
		}
		return sigv4.SigV4Credentials{
			AccessKeyId:     c.AccessKeyID,
			SecretAccessKey: c.SecretAccessKey,
			SessionToken:    c.SessionToken,
		}, nil
	}
}

// trimmedToken drops white space around the web identity token (a trailing
// newline in a hand-made token file), as the original does; the SDK sends
// the file as it is.
type trimmedToken struct {
	stscreds.IdentityTokenRetriever
}

func (t trimmedToken) GetIdentityToken() ([]byte, error) {
	b, err := t.IdentityTokenRetriever.GetIdentityToken()
	return bytes.TrimSpace(b), err
}

// awsRegion is cfg.AWSRegion or, as the original derives it, the region
// label of a Keyspaces endpoint such as cassandra.us-west-2.amazonaws.com.
func awsRegion(cfg config.Cassandra) (string, error) {
	if cfg.AWSRegion != "" {
		return cfg.AWSRegion, nil
	}
	if r := config.KeyspacesRegion(cfg.Host); r != "" {
		return r, nil
	}
	return "", fmt.Errorf("cassandra: SigV4 needs an AWS region (AWS_REGION); none is set and host %q names none", cfg.Host)
}
