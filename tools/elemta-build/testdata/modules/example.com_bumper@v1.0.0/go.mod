module example.com/bumper

go 1.26.0

require github.com/elemta/elemta v1.1.0
