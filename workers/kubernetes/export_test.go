package kubernetes

// ClientWith is Client with the service-account namespace file given, for
// tests.
var ClientWith = client
