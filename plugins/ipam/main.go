package main

import "github.com/shoalhq/shoal/sdk/ipam"

func main() { ipam.Serve(New()) }
