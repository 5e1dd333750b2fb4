package cassandra

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
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
// username and password when set, else SigV4 with web identity (role ARN,
// session name and token file) when a role is set, else SigV4 with static
// keys. stsEndpoint overrides the STS endpoint (tests only).
func newAuth(cfg config.Cassandra, stsEndpoint string) (auth, error) {
	if cfg.Username != "" || cfg.Password != "" {
		if cfg.Username == "" || cfg.Password == "" {
			return auth{}, errors.New("cassandra: password authentication needs both a username and a password")
		}
		return auth{
			authenticator: gocql.PasswordAuthenticator{Username: cfg.Username, Password: cfg.Password},
			describe:      "password authentication as " + cfg.Username,
		}, nil
	}

	var provider aws.CredentialsProvider
	var describe string
	switch {
	case cfg.AWSRoleARN != "" || cfg.AWSWebIdentityToken != "":
		var missing []string
		if cfg.AWSRoleARN == "" {
			missing = append(missing, "role ARN (AWS_ROLE_ARN)")
		}
		if cfg.AWSRoleSessionName == "" {
			missing = append(missing, "role session name (AWS_ROLE_SESSION_NAME)")
		}
		if cfg.AWSWebIdentityToken == "" {
			missing = append(missing, "web identity token file (AWS_WEB_IDENTITY_TOKEN_FILE)")
		}
		if len(missing) > 0 {
			return auth{}, fmt.Errorf("cassandra: AWS web identity is missing the %s", strings.Join(missing, ", "))
		}
		region, err := awsRegion(cfg)
		if err != nil {
			return auth{}, err
		}
		so := sts.Options{Region: region}
		if stsEndpoint != "" {
			so.BaseEndpoint = aws.String(stsEndpoint)
		}
		provider = stscreds.NewWebIdentityRoleProvider(sts.New(so), cfg.AWSRoleARN,
			tokenFile(cfg.AWSWebIdentityToken),
			func(o *stscreds.WebIdentityRoleOptions) { o.RoleSessionName = cfg.AWSRoleSessionName })
		describe = "AWS SigV4 with web identity for " + cfg.AWSRoleARN
	case cfg.AWSAccessKeyID != "" || cfg.AWSSecretAccessKey != "":
		if cfg.AWSAccessKeyID == "" || cfg.AWSSecretAccessKey == "" {
			return auth{}, errors.New("cassandra: static AWS credentials need both an access key ID and a secret access key")
		}
		provider = credentials.NewStaticCredentialsProvider(cfg.AWSAccessKeyID, cfg.AWSSecretAccessKey, "")
		describe = "AWS SigV4 with static keys"
	default:
		return auth{}, errors.New("cassandra: no credentials: set a username and password, " +
			"or an AWS role ARN, session name and web identity token file, or an AWS access key ID and secret access key")
	}

	region, err := awsRegion(cfg)
	if err != nil {
		return auth{}, err
	}
	cache := aws.NewCredentialsCache(provider)
	return auth{
		authenticator: sigv4.NewAwsAuthenticatorWithCredentialCallback(region, credentialsCallback(cache)),
		aws:           cache,
		region:        region,
		describe:      describe + " in " + region,
	}, nil
}

// credentialsCallback adapts an AWS credentials provider to the SigV4
// plugin, which asks for credentials on every handshake; the cache in front
// refreshes them before they expire.
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

// tokenFile reads the web identity token afresh on every use, so a rotated
// token is picked up; surrounding white space (a trailing newline) is
// dropped, as the original does.
type tokenFile string

func (f tokenFile) GetIdentityToken() ([]byte, error) {
	b, err := os.ReadFile(string(f))
	if err != nil {
		return nil, fmt.Errorf("reading the web identity token: %w", err)
	}
	return bytes.TrimSpace(b), nil
}

// awsRegion is cfg.AWSRegion or, as the original derives it, the second
// label of a Keyspaces endpoint such as cassandra.us-west-2.amazonaws.com.
func awsRegion(cfg config.Cassandra) (string, error) {
	if cfg.AWSRegion != "" {
		return cfg.AWSRegion, nil
	}
	if labels := strings.Split(cfg.Host, "."); len(labels) >= 4 && strings.HasSuffix(cfg.Host, ".amazonaws.com") {
		return labels[1], nil
	}
	return "", fmt.Errorf("cassandra: SigV4 needs an AWS region (AWS_REGION); none is set and host %q is not a Keyspaces endpoint", cfg.Host)
}
