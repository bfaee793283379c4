package main

import (
	"strings"
	"testing"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// TestPrettyPortsShowMode: inspect --pretty says how each published port is
// published, since a port in mode host answers only on its tasks' nodes.
func TestPrettyPortsShowMode(t *testing.T) {
	svc := &objectv1.Service{Id: "s1", Spec: &objectv1.ServiceSpec{
		Annotations: &objectv1.Annotations{Name: "p1"},
		Endpoint: &objectv1.EndpointSpec{Ports: []*objectv1.PortConfig{
			{Protocol: "tcp", TargetPort: 8080, PublishedPort: 18080, Mode: objectv1.PublishMode_PUBLISH_MODE_HOST},
			{Protocol: "udp", TargetPort: 53, PublishedPort: 5353},
			{Protocol: "tcp", TargetPort: 9000, Mode: objectv1.PublishMode_PUBLISH_MODE_HOST},
		}},
	}}
	var b strings.Builder
	if err := writeServicePretty(&b, svc); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	got := strings.Join(strings.Fields(lines[len(lines)-1]), " ")
	if want := "Ports: *:18080->8080/tcp (host), *:5353->53/udp, 9000/tcp"; got != want {
		t.Errorf("inspect --pretty printed\n%s\nwant its last line to be %q", b.String(), want)
	}
}
