-- fct_lookalike_seed holds exactly ceil(lookalike_top_share x contactable customers) rows,
-- ranked 1..n, and no contactable customer outside it outranks one inside (revenue desc,
-- customer_id asc).
with

contactable as (

    select customer_id, revenue from {{ ref('dim_customers') }} where is_contactable

),

seed as (

    select * from {{ ref('fct_lookalike_seed') }}

),

size_check as (

    select 'size' as problem, cast(null as varchar) as customer_id
    from (select count(*) as n from contactable) as c
    cross join (select count(*) as n, max(lookalike_rank) as max_rank, min(lookalike_rank)
        as min_rank, count(distinct lookalike_rank) as ranks from seed) as s
    where s.n <> cast(ceil(cast({{ var('lookalike_top_share') }} as numeric(18, 9)) * c.n)
            as bigint)
        or (s.n > 0 and (s.min_rank <> 1 or s.max_rank <> s.n or s.ranks <> s.n))

),

outranked as (

    select 'outranked' as problem, outside.customer_id
    from contactable as outside
    inner join seed
        on outside.revenue > seed.lookalike_value
        or (outside.revenue = seed.lookalike_value and outside.customer_id < seed.customer_id)
    where outside.customer_id not in (select customer_id from seed)

)

select * from size_check
union all
select * from outranked
