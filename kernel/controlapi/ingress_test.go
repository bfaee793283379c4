package controlapi

import (
	"strings"
	"testing"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// A port published without a mode goes through the routing mesh when the
// service is on a network, and binds on its node otherwise; mode ingress
// needs a network, and at most maxIngressPorts ports use it.
func TestIngressPorts(t *testing.T) {
	spec := func(networked bool, ports ...*objectv1.PortConfig) *objectv1.ServiceSpec {
		s := &objectv1.ServiceSpec{
			Annotations: &objectv1.Annotations{Name: "web"},
			Task:        &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "nginx"}},
			Endpoint:    &objectv1.EndpointSpec{Ports: ports},
		}
		if networked {
			s.Task.Networks = []*objectv1.NetworkAttachmentConfig{{Target: "app"}}
		}
		ApplyServiceDefaults(s)
		return s
	}
	port := func(published uint32, mode objectv1.PublishMode) *objectv1.PortConfig {
		return &objectv1.PortConfig{TargetPort: 80, PublishedPort: published, Mode: mode}
	}
	if s := spec(true, port(8080, 0)); s.Endpoint.Ports[0].Mode != objectv1.PublishMode_PUBLISH_MODE_INGRESS || ValidateServiceSpec(s) != nil {
		t.Errorf("networked service: default mode %s (valid: %v), want ingress", s.Endpoint.Ports[0].Mode, ValidateServiceSpec(s))
	}
	if s := spec(false, port(8080, 0)); s.Endpoint.Ports[0].Mode != objectv1.PublishMode_PUBLISH_MODE_HOST || ValidateServiceSpec(s) != nil {
		t.Errorf("service without networks: default mode %s (valid: %v), want host", s.Endpoint.Ports[0].Mode, ValidateServiceSpec(s))
	}
	err := ValidateServiceSpec(spec(false, port(8080, objectv1.PublishMode_PUBLISH_MODE_INGRESS)))
	if err == nil || !strings.Contains(err.Error(), "spec.endpoint.ports[0].mode") || !strings.Contains(err.Error(), "network") {
		t.Errorf("ingress without a network: %v, want an error naming spec.endpoint.ports[0].mode", err)
	}
	var many []*objectv1.PortConfig
	for i := range maxIngressPorts + 1 {
		many = append(many, port(uint32(9000+i), objectv1.PublishMode_PUBLISH_MODE_INGRESS))
	}
	err = ValidateServiceSpec(spec(true, many...))
	if err == nil || !strings.Contains(err.Error(), "spec.endpoint.ports[16].mode") {
		t.Errorf("%d ingress ports: %v, want an error naming the 17th", len(many), err)
	}
	many[maxIngressPorts].Mode = objectv1.PublishMode_PUBLISH_MODE_HOST
	if err := ValidateServiceSpec(spec(true, many...)); err != nil {
		t.Errorf("%d ingress ports and one host port: %v, want nil", maxIngressPorts, err)
	}
	s := spec(true)
	s.Endpoint.Mode = objectv1.EndpointMode(7)
	if err := ValidateServiceSpec(s); err == nil || !strings.Contains(err.Error(), "spec.endpoint.mode") {
		t.Errorf("endpoint mode 7: %v, want an error naming spec.endpoint.mode", err)
	}
}
