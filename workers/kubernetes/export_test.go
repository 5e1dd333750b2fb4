package kubernetes

// ClientFromEnvironmentWith is ClientFromEnvironment with the environment
// and the service-account namespace file given, for tests.
var ClientFromEnvironmentWith = clientFromEnvironment
