module github.com/marmotws/marmot

go 1.26.8
