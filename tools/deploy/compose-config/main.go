// compose-config prints a Compose file as Docker Compose would run it (`docker compose config
// --format json`) through compose-go, the loader Docker Compose itself uses: the compose-spec
// schema, interpolation, merge and the semantic checks (unknown services in depends_on, undefined
// volumes and secrets, ...). Exits 1 with the loader's message when the file is invalid. For
// machines without Docker Compose (CI); tools/deploy's tests run it.
//
//	compose-config deploy/docker-compose.yml
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: compose-config <compose file>...")
		os.Exit(2)
	}
	options, err := cli.NewProjectOptions(os.Args[1:], cli.WithOsEnv, cli.WithName("dops"))
	if err != nil {
		fail(err)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}
	out, err := project.MarshalJSON()
	if err != nil {
		fail(err)
	}
	os.Stdout.Write(append(out, '\n'))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
