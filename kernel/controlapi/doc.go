// Package controlapi serves the control API: validation, forwarding from
// followers to the leader, and the reads and writes that the CLI, the
// dashboard and third-party tools make on the cluster's desired state.
//
// # Validation
//
// Every request is checked before anything is written. A spec first gets its
// defaults (ApplyServiceDefaults, ApplyClusterDefaults), which make every
// "unset" explicit so that what is stored is what runs; then it is validated
// (ValidateServiceSpec, ValidateNodeSpec, ValidateClusterSpec). Validation
// never stops at the first problem: it returns sdk.FieldErrors naming every
// bad field by its path from the request's spec ("spec.task.restart.delay",
// "spec.endpoint.ports[1].target_port") with a message that gives the
// allowed values, and the server turns it into InvalidArgument.
//
// The bounds are named constants in validate.go, each with the reason for
// its value. Validation is pure and deterministic: the same spec always gives
// the same errors in the same order, so results can be compared and cached.
//
// The placement constraint language ("node.labels.rack==a") is the SDK's,
// scheduler.ParseConstraint, so that what the API accepts is what every
// scheduler matches; ValidateConstraint adds the API's bounds on lengths.
package controlapi
