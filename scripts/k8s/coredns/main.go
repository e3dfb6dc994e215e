// Command coredns is a slim CoreDNS for scripts/k8s (phase 2): the kubernetes
// plugin for cluster.local, template to answer NXDOMAIN for every other name (the
// test cluster reaches nothing outside), bind, errors and log.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/template"
)

func init() {
	// The order in which the plugins of a server block handle a query.
	dnsserver.Directives = []string{"bind", "errors", "log", "kubernetes", "template"}
}

func main() { coremain.Run() }
