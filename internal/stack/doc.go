// Package stack translates compose files into shoal object specs, for
// `shoal stack deploy -c FILE [-c FILE2] NAME`.
//
// Start with [Load]: it reads the files named in [Options] with compose-go,
// the compose specification's own library (schema validation, variable
// interpolation from [Options.Env] and the working directory's .env file,
// extends, include and the merging of several files), then translates the
// project field by field into a [Plan]: the service, network, secret and
// config specs to create or update, plus the names of the external objects
// the services use, which the caller checks exist.
//
// The translation follows `docker stack deploy`:
//
//   - Every object the stack owns is named NAME_key (services, networks,
//     secrets, configs, named volumes), or by its top-level name: when the
//     file sets one, and carries the label [LabelNamespace]=NAME. External
//     objects keep their own name.
//   - Services reference networks, secrets, configs and volumes by those full
//     names. A service with no networks joins NAME_default. On each network a
//     service is also known by its short compose name, so "db" reaches the
//     stack's db service.
//   - entrypoint becomes ContainerSpec.command and command becomes
//     ContainerSpec.args.
//   - Bind mount sources are absolute, relative paths being taken from the
//     project directory (WorkingDir, by default the first file's directory).
//
// Every key of the compose specification that shoal does not implement is
// named in [Plan.Warnings] and ignored; keys outside the specification
// (a typo such as "imagee") and wrong values are errors naming the file,
// the service and the key. Load never writes anything and never contacts a
// manager; its output is deterministic (objects sorted by name, lists in a
// fixed order), so the caller can compare a plan's specs with the deployed
// ones and update only what changed.
package stack
