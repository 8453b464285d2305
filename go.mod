module github.com/drainwell/drainwell

go 1.26.0

require (
	github.com/kelseyhightower/envconfig v1.4.0
	github.com/spf13/cobra v1.8.0
)

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/spf13/pflag v1.0.5 // indirect
)
