// Package supervisor provides the restart budget that marmot applies to its
// actors and reports every failure and restart as an OpenTelemetry span.
package supervisor
