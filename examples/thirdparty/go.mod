module example.com/elemta-headerlist

go 1.26.0

require (
	github.com/elemta/elemta v0.0.0-00010101000000-000000000000
	github.com/stretchr/testify v1.12.1
)

require (
	github.com/miekg/dns v1.1.73 // indirect
	github.com/pelletier/go-toml/v2 v2.4.3 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
	golang.org/x/mod v0.43.0 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sync v0.25.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)

// For working on the plugin inside the Elemta repository. A published plugin
// drops this line and requires a released github.com/elemta/elemta version.
replace github.com/elemta/elemta => ../..
