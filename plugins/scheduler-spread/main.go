package main

import "github.com/shoalhq/shoal/sdk/scheduler"

func main() { scheduler.Serve(New()) }
