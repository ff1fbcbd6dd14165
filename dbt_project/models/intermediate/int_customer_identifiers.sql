-- One row per customer and distinct normalised identifier (kind 'phone' = E.164 with '+',
-- kind 'email' = trimmed, lower-cased address) over all of the customer's identity-graph
-- nodes: the input of audience exports (audiences/identifiers.py). Values are normalised once,
-- in the warehouse (raw.contact_points, warehouse/contact_points.py); each platform's own
-- transform and hash is applied at export time (audiences/platforms.py), never here. An
-- identifier on more than VORONKA_IDENTITY_MAX_SHARED people (raw.identity_shared_identifiers:
-- a switchboard, test@test.ru) identifies nobody: it merged no customers and is not exported.
with

points as (

    select node_id, point_kind, value_normalized
    from {{ ref('int_contact_points__unioned') }}
    where value_normalized is not null
        and value_normalized <> ''

),

shared as (

    select kind, value_md5
    from {{ source('voronka_identity', 'identity_shared_identifiers') }}

),

identifying as (

    select points.*
    from points
    left join shared
        on points.point_kind = shared.kind
        and {{ dbt.hash('points.value_normalized') }} = shared.value_md5
    where shared.value_md5 is null

),

resolved as (

    select node_id, customer_id
    from {{ ref('int_customers__resolved') }}

),

final as (

    select distinct
        resolved.customer_id,
        identifying.point_kind as kind,
        identifying.value_normalized
    from identifying
    inner join resolved
        on identifying.node_id = resolved.node_id

)

select * from final
