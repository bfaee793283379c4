package sdk

import (
	"fmt"

	"github.com/BurntSushi/toml"
)

// DecodeConfig decodes a plugin's [plugins.<kind>.config] table, given as
// TOML text, into v, strictly: every key v does not declare is an error
// naming it. Empty data leaves v as it is (its defaults).
func DecodeConfig(data []byte, v any) error {
	if len(data) == 0 {
		return nil
	}
	md, err := toml.Decode(string(data), v)
	if err != nil {
		return FieldErrors{{Field: "config", Message: err.Error()}}
	}
	var fe FieldErrors
	for _, k := range md.Undecoded() {
		fe.Add("config."+k.String(), "unknown key")
	}
	if err := fe.Err(); err != nil {
		return fmt.Errorf("plugin config: %w", err)
	}
	return nil
}
