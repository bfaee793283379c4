// Package dashboard is the web dashboard every manager serves on its
// metrics listener: one page of embedded HTML, CSS and JavaScript (no
// framework, nothing loaded from the internet) showing the cluster, its
// nodes, services, tasks and networks, updated live, and a service's logs
// followed.
//
// Data comes from the manager's own store and event hub, so a follower
// serves the dashboard as well as the leader:
//
//	GET  /api/state                    one View of the store as JSON
//	GET  /api/events                   server-sent events: a "snapshot"
//	                                   (the same JSON, taken after
//	                                   subscribing, so nothing falls between
//	                                   it and the changes), then "change"
//	                                   batches carrying the changed objects
//	GET  /api/services/{ref}/logs      server-sent "logs" batches of a
//	                                   service's tasks, followed (TaskLogs
//	                                   through the control API, so from the
//	                                   leader wherever the page is served)
//	POST /api/login                    trades the token for a session cookie
//	POST /api/services/{ref}/scale     {"replicas": N}        admin only
//	POST /api/services/{ref}/image     {"image": "REF"}       admin only
//	POST /api/nodes/{ref}/availability {"availability": "drain"|"active"|"pause"}
//	                                                          admin only
//
// Access (see Handler.access): a request from a loopback address reads
// without credentials, as /metrics does; any other request, and every
// write, needs the token of the config's metrics.dashboard_token_file. With
// no token file the dashboard serves loopback only and has no write
// actions.
//
// Nothing secret is served: objects are copied field by field into what the
// page shows (view.go), so a secret is a name and a size, the cluster's
// root key, join tokens and gossip key never leave, and a task's
// environment and command stay out.
//
// Goroutines: none of its own; each streaming request holds one hub
// subscription (or one TaskLogs stream) for as long as the client stays.
package dashboard
