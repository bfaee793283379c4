// Package sdk is shoal's public contract for plugin authors and API clients.
//
// Start here:
//   - The object model (nodes, services, tasks) is in sdk/proto/shoal/object/v1.
//   - The control API clients call is in sdk/proto/shoal/control/v1.
//   - Errors: every error that crosses a process boundary is one of the kinds
//     below (ErrNotFound, ErrInvalidArgument, ...). ToGRPC and FromGRPC map
//     them to gRPC status codes and back, so errors.Is works on both sides.
//   - Validation collects FieldErrors; FieldErrors is an error of kind
//     ErrInvalidArgument that names every bad field.
//   - Logging: a plugin logs with Logger, whose lines the kernel carries
//     into the node's log at their level.
//
// Nothing under sdk/ imports the kernel or the plugins: it can become its own
// module.
package sdk
