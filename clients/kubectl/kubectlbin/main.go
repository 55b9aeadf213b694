// Command kubectl is kubectl as its release is built: the kubectl
// library's root command, run the way component-base runs Kubernetes
// commands, with client-go's auth plugins registered. It is a module of
// its own so that the suite's module does not carry kubectl's
// dependencies; clients/kubectl builds it once per version into a cache
// (see Build there), with the version set by -ldflags -X on
// k8s.io/component-base/version.
package main

import (
	"os"

	_ "k8s.io/client-go/plugin/pkg/client/auth" // as the release binary: exec and OIDC auth providers
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	// -v must take effect before the command is built (it reads .kuberc
	// and looks for plugins, logging as it goes), so it is read from the
	// arguments first, as kubectl's own main does.
	_, _ = logs.GlogSetter(cmd.GetLogVerbosity(os.Args))
	if err := cli.RunNoErrOutput(cmd.NewDefaultKubectlCommand()); err != nil {
		util.CheckErr(err) // prints the error as kubectl does and exits 1
	}
}
